"""What a run's numbers support, said in one place, so that report.md, the model card and the printed summary agree.

Inheritune's claim is comparative: a model that inherits the reference's first blocks reaches the reference's
validation loss, where a model of the same size trained from random weights on the same budget does not. When the
same-size random-init baseline reaches it too, "Inheritune matched the reference" is true but shows nothing about
inheriting: the reference is too weak (too few training tokens) to tell the two apart. `weak_reference` says so,
and what would make the comparison mean what it claims.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .markdown import cell


def random_baseline(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The random-init baseline's row of rounds.json (kind 'random_baseline'), or None when the run trained none."""
    return next((row for row in rows if row.get("kind") == "random_baseline"), None)


def weak_reference(rows: Sequence[Mapping[str, Any]], reference_tokens: int | None = None) -> str | None:
    """The caveat when the same-size random-init baseline also reached the target (None when it did not, or when
    there was no baseline): the reference is too weak for the comparison to show the method's benefit.

    `reference_tokens` (the tokens the reference was trained on, when the run trained it) sizes the suggestion.
    """
    baseline = random_baseline(rows)
    if baseline is None or not baseline.get("matched") or baseline.get("val_loss") is None:
        return None
    layers = baseline.get("layers")
    trained = f" (it saw {reference_tokens:,} training tokens)" if reference_tokens else ""
    return (
        f"But the same-size random-init model reached it too ({cell(float(baseline['val_loss']))} with {layers} "
        f"layers, on one round's budget): the reference{trained} is too weak for this comparison to show what "
        "inheriting its blocks buys. Train the reference on several times more tokens (a larger budget, e.g. "
        f"--reference_max_steps or --budget), until it clearly beats a random-init model of {layers} layers, and "
        "compare again."
    )


__all__ = ["random_baseline", "weak_reference"]
