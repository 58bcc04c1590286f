"""Deprecated: `check_output_dir` and `atomic_output_dir` live in `inheritune_hf.io` (removed after one release).

Importing a name from here still works and warns, so code written against 0.1 keeps running while it moves.
"""

from __future__ import annotations

import warnings
from typing import Any

from . import io

_MOVED = ("atomic_output_dir", "check_output_dir")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"inheritune_hf.output.{name} moved to inheritune_hf.io.{name}; the old import goes in the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(io, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
