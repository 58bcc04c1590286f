"""Which blocks to keep: the paper's first k, or the blocks that the peers' measures say matter.

`select_layers(report, k, criterion)` reads one `AttentionReport` (rank, mass, Block Influence and angular
distances, all from the same forward pass and samples) and returns the k source blocks to keep, sorted, with
the reason in words:

- ``"prefix"``: the paper's Algorithm 1 keeps the first k blocks (the deep ones are lazy);
- ``"rank"``: drop the L - k blocks of lowest MaxRank (attention collapsed to rank 1 first); ties drop the
  deeper block, as the paper finds collapse in the deep half;
- ``"block_influence"``: ShortGPT (Men et al. 2024) drops the L - k blocks of lowest BI_l = 1 - mean cos(x_l,
  y_l), the blocks that turn the residual stream least; ties drop the deeper block;
- ``"angular"``: Gromov et al. (2024) drop the one contiguous span of n = L - k blocks whose ends are closest,
  l* = argmin_l d(x_l, x_{l+n}), d the mean last-token arccos(cos) / pi.

The result is a tuple of block indices, so `inherit(model, layers=selection)` takes it as it is.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import InvalidLayersError
from ..settings import SELECTION_CRITERIA
from .report import AttentionReport

__all__ = ["SELECTION_CRITERIA", "LayerSelection", "select_layers"]


class LayerSelection(tuple):
    """The source blocks to keep (sorted), which `criterion` chose them, the blocks it dropped, and why.

    A tuple of ints, so it goes straight into `inherit(model, layers=...)` and `inherit_checkpoint`.
    """

    criterion: str
    reason: str
    dropped: tuple[int, ...]

    def __new__(cls, layers: Iterable[int], criterion: str, reason: str, dropped: Iterable[int] = ()):
        selection = super().__new__(cls, sorted(layers))
        selection.criterion, selection.reason, selection.dropped = criterion, reason, tuple(sorted(dropped))
        return selection

    @property
    def layers(self) -> list[int]:
        return list(self)

    def __repr__(self) -> str:
        return f"LayerSelection({list(self)}, criterion={self.criterion!r}, dropped={list(self.dropped)})"

    def __reduce__(self):
        return (type(self), (list(self), self.criterion, self.reason, self.dropped))


def _block_max_rank(report: AttentionReport) -> dict[int, float]:
    """MaxRank per decoder block (a block with several attention calls takes the largest)."""
    by_block: dict[int, float] = {}
    for layer, value in zip(report.layers, report.max_rank, strict=True):
        by_block[layer] = max(value, by_block.get(layer, value))
    return by_block


def _fmt(values: Iterable[float]) -> str:
    return ", ".join(f"{value:.3g}" for value in values)


def select_layers(report: AttentionReport, num_layers: int, criterion: str = "prefix") -> LayerSelection:
    """The `num_layers` source blocks of the reference to keep by `criterion` (see the module docstring).

    Raises `InvalidLayersError` for an unknown criterion, a `num_layers` outside 1..L, or a report without the
    measure the criterion needs (a report written before Block Influence and angular distance existed).
    """
    if criterion not in SELECTION_CRITERIA:
        raise InvalidLayersError(f"criterion must be one of {SELECTION_CRITERIA}, got {criterion!r}.")
    total = report.num_layers
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or not 1 <= num_layers <= total:
        raise InvalidLayersError(
            f"num_layers={num_layers!r} is out of range: the report's model has {total} blocks, so choose 1..{total}."
        )
    drop = total - num_layers
    blocks = range(total)

    if criterion == "prefix":
        return LayerSelection(
            range(num_layers),
            criterion,
            f"The paper's Algorithm 1: keep the first {num_layers} of {total} blocks (deep blocks are the lazy ones).",
            range(num_layers, total),
        )

    if criterion == "rank":
        max_rank = _block_max_rank(report)
        # Blocks without attention (hybrid models) have no rank; they are dropped only after every attention block.
        order = sorted(blocks, key=lambda b: (max_rank.get(b, float("inf")), -b))
        dropped = order[:drop]
        lazy = [b for b in dropped if b in report.lazy_layers]
        reason = (
            f"Dropped the {drop} block(s) of lowest MaxRank {sorted(dropped)} "
            f"(MaxRank {_fmt(max_rank.get(b, float('nan')) for b in sorted(dropped))}; {len(lazy)} lazy, i.e. "
            f"rank 1 at tau={report.settings.get('tau', 0.9)}); kept those whose attention still has rank."
        )
        return LayerSelection(set(blocks) - set(dropped), criterion, reason, dropped)

    if criterion == "block_influence":
        influence = report.block_influence
        if influence is None:
            raise InvalidLayersError(
                "The report has no Block Influence (written before it existed, or the block stack was not found); "
                "run analyze_attention / inheritune analyze again."
            )
        order = sorted(blocks, key=lambda b: (influence[b], -b))
        dropped = sorted(order[:drop])
        reason = (
            f"ShortGPT: dropped the {drop} block(s) of lowest Block Influence {dropped} "
            f"(BI {_fmt(influence[b] for b in dropped)}; BI = 1 - mean cos(input, output), so these turn the "
            "residual stream least)."
        )
        return LayerSelection(set(blocks) - set(dropped), criterion, reason, dropped)

    if report.angular is None:
        raise InvalidLayersError(
            "The report has no angular distances (written before they existed, or the block stack was not found); "
            "run analyze_attention / inheritune analyze again."
        )
    if drop == 0:
        return LayerSelection(blocks, criterion, f"Kept all {total} blocks: there is no span to drop.")
    distances = report.angular_distance(drop)
    start = min(range(len(distances)), key=lambda s: (distances[s], -s))
    dropped = list(range(start, start + drop))
    reason = (
        f"Gromov et al.: dropped blocks {start}..{start + drop - 1}, the span of {drop} whose ends are closest "
        f"(angular distance {distances[start]:.3g} between the last token's states at blocks {start} and "
        f"{start + drop}; the largest of {len(distances)} spans is {max(distances):.3g})."
    )
    return LayerSelection(set(blocks) - set(dropped), criterion, reason, dropped)
