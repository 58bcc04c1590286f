"""Moved to `inheritune_hf.testing` (a test harness, not a step of the method); this name goes away in 0.3."""

from __future__ import annotations


def __getattr__(name: str):
    import warnings

    from . import testing

    value = getattr(testing, name)  # AttributeError for names `testing` does not have either
    warnings.warn(
        f"inheritune_hf.sweep.{name} moved to inheritune_hf.testing; the old import goes away in 0.3.",
        DeprecationWarning,
        stacklevel=2,
    )
    return value
