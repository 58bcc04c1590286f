"""`AttentionReport`: the result of `analyze_attention`, with the paper's per-layer summaries and exports.

Rows are attention layers in the order the model calls them; `layers[i]` is the decoder block index of row
i (they differ only in hybrid models where some blocks have no attention). The block measures of the peers
(`block_influence`, `angular_distance`) are indexed by decoder block, all L of them.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import InherituneError
from ..io import atomic_path, atomic_write_text

if TYPE_CHECKING:
    from transformers import PretrainedConfig

REPORT_FORMAT_VERSION = 1


class LayerSuggestion(NamedTuple):
    """How many of the reference model's first blocks to inherit, and why."""

    num_layers: int
    reason: str


def _lazy(max_rank: float) -> bool:
    # "MaxRank(l) = 1, rounded": ranks are >= 1, so this is MaxRank < 1.5.
    return max_rank < 1.5


@dataclass
class AttentionReport:
    """Per-(layer, head) mean attention rank and mass of a model, as defined in the paper (section 3).

    - `rank[i][h]`: mean over samples of k*, the fewest singular values holding `tau` of the squared spectrum;
    - `mass[i][h]`: mean over samples of m*, the fewest columns holding `eta` of the squared Frobenius norm;
    - `max_rank[i]` (MaxRank) = max over heads, `avg_mass[i]` (AvgMass) = mean over heads;
    - `lazy_layers`: the blocks whose MaxRank rounds to 1 (every head attends in a rank-1 pattern);
    - `block_influence[b]` (ShortGPT): 1 - mean over tokens of cos(x_b, y_b), block b's input and output;
    - `angular[i][j]` (Gromov et al.): mean over samples of arccos(cos(x_i, x_j)) / pi of the last token, x_i
      the input of block i (x_L the last block's output); `angular_distance(n)` reads the spans of n blocks.

    The block measures are None in reports written before they existed, or for a model whose block stack was
    not found.
    """

    rank: list[list[float]]
    mass: list[list[float]]
    layers: list[int]
    layer_names: list[str]
    num_layers: int
    model_name: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    block_influence: list[float] | None = None
    angular: list[list[float]] | None = None

    def __post_init__(self) -> None:
        if not (len(self.rank) == len(self.mass) == len(self.layers) == len(self.layer_names)):
            raise InherituneError(
                "AttentionReport needs one entry per attention layer in rank, mass, layers and layer_names; got "
                f"{len(self.rank)}, {len(self.mass)}, {len(self.layers)}, {len(self.layer_names)}."
            )
        if self.block_influence is not None and len(self.block_influence) != self.num_layers:
            raise InherituneError(
                f"block_influence needs one value per block ({self.num_layers}), got {len(self.block_influence)}."
            )
        if self.angular is not None and (
            len(self.angular) != self.num_layers + 1 or any(len(row) != self.num_layers + 1 for row in self.angular)
        ):
            raise InherituneError(
                f"angular needs a {self.num_layers + 1} x {self.num_layers + 1} matrix (one row and column per block "
                "boundary)."
            )

    # -- the peers' block measures ------------------------------------------------------------------------------

    def angular_distance(self, n: int = 1) -> list[float]:
        """Gromov et al.'s d(x_l, x_{l+n}) for each span of n blocks starting at block l = 0 .. L - n.

        The mean over samples of arccos(cos(x_l, x_{l+n})) / pi of the last token; the span whose distance is
        smallest changes the representation least, and is the one Gromov et al. drop.
        """
        if self.angular is None:
            raise InherituneError(
                "This report has no angular distances (written before they existed, or the model's block stack "
                "was not found); run analyze_attention again."
            )
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= self.num_layers:
            raise InherituneError(f"The span n must be an integer in 1..{self.num_layers}, got {n!r}.")
        return [self.angular[start][start + n] for start in range(self.num_layers + 1 - n)]

    # -- the paper's summaries ----------------------------------------------------------------------------------

    @property
    def max_rank(self) -> list[float]:
        """MaxRank(l): the largest mean rank over the heads of each layer."""
        return [max(heads) for heads in self.rank]

    @property
    def avg_mass(self) -> list[float]:
        """AvgMass(l): the mean over heads of each layer's mean mass."""
        return [sum(heads) / len(heads) for heads in self.mass]

    @property
    def lazy_layers(self) -> list[int]:
        """Decoder blocks whose MaxRank rounds to 1."""
        return [layer for layer, value in zip(self.layers, self.max_rank, strict=True) if _lazy(value)]

    @property
    def rank_one_heads(self) -> list[tuple[int, int]]:
        """(layer, head) pairs whose mean rank rounds to 1."""
        return [
            (layer, h)
            for layer, heads in zip(self.layers, self.rank, strict=True)
            for h, value in enumerate(heads)
            if _lazy(value)
        ]

    @property
    def rank_one_fraction(self) -> float:
        """Share of all heads whose mean rank rounds to 1 (the paper quotes ~50 % for LLaMA-3-8B)."""
        total = sum(len(heads) for heads in self.rank)
        return len(self.rank_one_heads) / total if total else 0.0

    def is_lazy_block(self, start: int, stop: int | None = None) -> bool:
        """The paper's block rule: the floor of the mean MaxRank over blocks [start, stop) is 1."""
        values = [
            value
            for layer, value in zip(self.layers, self.max_rank, strict=True)
            if start <= layer < (math.inf if stop is None else stop)
        ]
        return bool(values) and math.floor(sum(values) / len(values)) <= 1

    def suggest_num_layers(self, config: PretrainedConfig | None = None) -> dict[str, LayerSuggestion]:
        """Two answers to "how many first blocks should the smaller model inherit?", each with its reason.

        - ``"paper"``: L/2, where Inheritune starts before growing by 2 layers at a time;
        - ``"rank_guided"``: the first block after which the rest of the stack is lazy by the block rule (floor
          of the mean MaxRank is 1), i.e. the blocks that still do non-degenerate attention.

        With the reference's `config`, each answer is moved to the nearest number of layers its layer pattern
        allows (`nearest_valid_num_layers`: Gemma 4, say, only slices where a full-attention block ends), and
        the reason says so; without it the answers are the raw counts.
        """
        suggestions = self._raw_suggestions()
        if config is None:
            return suggestions
        from ..slicing import nearest_valid_num_layers  # the report stays importable without the slicing code

        moved = {}
        for key, (wish, reason) in suggestions.items():
            k = nearest_valid_num_layers(config, wish)
            if k != wish:
                reason += (
                    f" The architecture's layer pattern does not slice at {wish} blocks; {k} is the nearest "
                    "number that does."
                )
            moved[key] = LayerSuggestion(k, reason)
        return moved

    def _raw_suggestions(self) -> dict[str, LayerSuggestion]:
        total = self.num_layers
        half = max(1, total // 2)
        paper = LayerSuggestion(
            half,
            f"The paper's start: half of the reference's {total} blocks (Algorithm 1), then grow by 2 while the "
            "validation loss is worse than the reference's.",
        )
        cut = next((layer for layer in sorted(set(self.layers)) if self.is_lazy_block(layer)), None)
        if cut is None:
            guided = LayerSuggestion(
                total,
                f"No tail of the stack is lazy (the floor of the mean MaxRank over the last layers never reaches 1 at "
                f"tau={self.settings.get('tau', 0.9)}); attention rank gives no reason to drop blocks, so this rule "
                f"keeps all {total}. The paper's rule (start at L/2, grow until the loss matches) does not depend "
                "on it.",
            )
        else:
            keep = max(1, cut)
            tail = [layer for layer in self.layers if layer >= cut]
            guided = LayerSuggestion(
                keep,
                f"Blocks {cut}..{max(tail)} form a lazy block (floor of their mean MaxRank is 1: attention collapsed "
                f"to rank 1); keep the first {keep} block(s), which still attend with rank above 1.",
            )
        return {"paper": paper, "rank_guided": guided}

    # -- exports ------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format_version"] = REPORT_FORMAT_VERSION
        data["max_rank"] = self.max_rank
        data["avg_mass"] = self.avg_mass
        data["lazy_layers"] = self.lazy_layers
        if self.angular is not None:
            data["angular_distance_1"] = self.angular_distance(1)
        data["suggested_num_layers"] = {key: value._asdict() for key, value in self.suggest_num_layers().items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttentionReport:
        names = (
            "rank",
            "mass",
            "layers",
            "layer_names",
            "num_layers",
            "model_name",
            "settings",
            "block_influence",
            "angular",
        )
        missing = [name for name in names[:5] if name not in data]
        if missing:
            raise InherituneError(f"Not an AttentionReport: missing {missing}.")
        return cls(**{name: data[name] for name in names if name in data})

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The report as JSON (derived summaries included for readers); also written to `path` if given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> AttentionReport:
        """Read a report back from a JSON string or a file written by `to_json`."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text_or_path)
            if not path.is_file():
                raise InherituneError(f"{path} is neither a JSON report string nor an existing file.")
            text = path.read_text()
        return cls.from_dict(json.loads(text))

    def records(self) -> list[dict[str, Any]]:
        """One row per (layer, head): the long format of `to_dataframe` and `to_csv`.

        Where the report has them, each row also carries its block's Block Influence and the angular distance
        of the one-block span starting there (d(x_l, x_{l+1})); other spans come from `angular_distance(n)`.
        """
        rows = []
        influence = self.block_influence
        angular = self.angular_distance(1) if self.angular is not None else None
        for i, (layer, name) in enumerate(zip(self.layers, self.layer_names, strict=True)):
            max_rank, avg_mass = self.max_rank[i], self.avg_mass[i]
            block = {}
            if influence is not None and 0 <= layer < len(influence):
                block["block_influence"] = influence[layer]
            if angular is not None and 0 <= layer < len(angular):
                block["angular_distance_1"] = angular[layer]
            for head, (rank, mass) in enumerate(zip(self.rank[i], self.mass[i], strict=True)):
                rows.append(
                    {
                        "layer": layer,
                        "layer_name": name,
                        "head": head,
                        "rank": rank,
                        "mass": mass,
                        "layer_max_rank": max_rank,
                        "layer_avg_mass": avg_mass,
                        "layer_lazy": _lazy(max_rank),
                        **block,
                    }
                )
        return rows

    def to_dataframe(self) -> Any:
        """A pandas DataFrame with one row per (layer, head) (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as err:
            raise InherituneError("to_dataframe needs pandas: pip install pandas (or use to_csv).") from err
        return pd.DataFrame.from_records(self.records())

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write one row per (layer, head) as CSV (no pandas needed), atomically."""
        rows = self.records()
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["layer", "head", "rank", "mass"])
            writer.writeheader()
            writer.writerows(rows)

    def table(self) -> str:
        """A short per-layer table: block, MaxRank, AvgMass, number of rank-1 heads, lazy."""
        lines = [f"{'layer':>5}  {'MaxRank':>8}  {'AvgMass':>8}  {'rank-1 heads':>12}  lazy"]
        for layer, heads, max_rank, avg_mass in zip(self.layers, self.rank, self.max_rank, self.avg_mass, strict=True):
            ones = sum(_lazy(value) for value in heads)
            lines.append(
                f"{layer:>5}  {max_rank:>8.2f}  {avg_mass:>8.2f}  {f'{ones}/{len(heads)}':>12}  {'yes' if _lazy(max_rank) else ''}"
            )
        lazy = self.lazy_layers
        lines.append(f"lazy layers ({len(lazy)} of {len(self.layers)}): {lazy if lazy else 'none'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"AttentionReport({self.model_name}, {self.settings})\n{self.table()}"
