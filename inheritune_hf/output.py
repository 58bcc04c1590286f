"""Deprecated: `check_output_dir` and `atomic_output_dir` live in `inheritune_hf.io` (removed after one release).

Importing a name from here still works and warns, so code written against 0.1 keeps running while it moves.
"""

from __future__ import annotations

from typing import Any

from .errors import moved

_MOVED = ("atomic_output_dir", "check_output_dir")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return moved(__name__, name, "inheritune_hf.io")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
