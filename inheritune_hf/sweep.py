"""Moved to `inheritune_hf.testing` (a test harness, not a step of the method); this name goes away in 0.3."""

from __future__ import annotations

from .errors import moved


def __getattr__(name: str):
    return moved(__name__, name, "inheritune_hf.testing")
