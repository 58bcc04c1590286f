"""The paper's figures: the attention diagnosis of a reference, and the loss curves of an Inheritune run.

- `attention_figure(report)`: a layers x heads heatmap of mean attention rank k* on a fixed log scale 1..T (rank-1
  heads dotted, lazy layers framed), MaxRank and AvgMass per layer on the same fixed scale, each in its own panel,
  and the peers' block measures (Block Influence, angular distance) in a panel of their own when the report has
  them. A fixed scale is the point: ranks of 5.0 and 5.9 out of T = 100 are the same colour, as they should be;
  an auto-ranged scale would paint them as opposites.
- `loss_figure(rounds, ...)`: validation loss against training tokens, each curve from its step-0 evaluation (the
  model before any training): the reference's own training curve when the run trained it (else its loss as a
  line), every round (placed after the tokens the earlier rounds spent), the random-init baseline, and a star
  where a round matched.

Each builds a `matplotlib.figure.Figure` without pyplot (no global state, safe in threads and notebooks) and
returns it, so a notebook user can restyle it; `save_figure` writes one atomically. `plot_attention` and
`plot_loss_curves` (what `run_inheritune` calls) are build-and-save in one call. Needs matplotlib (the `plot`
extra); this module imports it only when a figure is built.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InherituneError
from .io import atomic_path, read_json

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .analyze.report import AttentionReport

__all__ = ["attention_figure", "loss_figure", "plot_attention", "plot_loss_curves", "save_figure"]

#: A head (or a layer's MaxRank) counts as rank 1 below this: "rounds to 1", as in `AttentionReport.lazy_layers`.
RANK_ONE_BELOW = 1.5

_LAZY_COLOUR = "tab:red"
# Above this many layers (or heads) an axis labels every k-th one, so the labels never overlap.
_MAX_LAYER_LABELS = 64
_MAX_HEAD_LABELS = 16


def _matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise InherituneError("Figures need matplotlib: pip install 'inheritune-hf[plot]'.") from err


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write `fig` to `path` atomically (the previous file stays whole if saving fails) and return the file written.

    A path without a suffix gets matplotlib's default format's (`savefig` would add it itself, so the returned
    name is the one on disk).
    """
    from matplotlib import rcParams

    path = Path(path)
    if not path.suffix:
        path = path.with_name(f"{path.name}.{rcParams['savefig.format']}")
    with atomic_path(path) as tmp:  # the temporary keeps the suffix, so savefig picks the same format
        fig.savefig(tmp, dpi=dpi)
    return path


def _steps(count: int, most: int) -> list[int]:
    """Tick positions 0..count-1, every k-th so that at most `most` are labelled (integers, always)."""
    step = max(1, math.ceil(count / most))
    return list(range(0, count, step))


def _rank_ticks(top: float, dense: bool = True) -> list[float]:
    """1, 2, 5, 10, 20, 50, ... (or, not `dense`, 1, 10, 100, ...) below `top`, and `top` itself: readable ticks
    for a log axis over 1..T."""
    steps = (1, 2, 5) if dense else (1,)
    ticks = [m * 10**e for e in range(0, 7) for m in steps if m * 10**e < top]
    # a tick too close to T (on the log scale) would print over T's own label
    while len(ticks) > 1 and math.log(top / ticks[-1]) < 0.25:
        ticks.pop()
    return ticks + [top]


def _integer_format(value: float, _position: Any = None) -> str:
    return f"{value:.0f}" if value >= 1 else f"{value:g}"


def _use_rank_scale(ax: Axes, top: float, axis: str = "y") -> None:
    """A log axis over 1..T with plain integer labels (1, 2, 5, 10, ..., T)."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    set_scale, set_lim, ticks = (
        (ax.set_yscale, ax.set_ylim, ax.yaxis) if axis == "y" else (ax.set_xscale, ax.set_xlim, ax.xaxis)
    )
    set_scale("log")
    set_lim(1 / 1.15, top * 1.15)
    ticks.set_ticks(_rank_ticks(top))
    ticks.set_major_formatter(FuncFormatter(_integer_format))
    ticks.set_minor_locator(NullLocator())


# ---------------------------------------------------------------------------------------------------------------
# The attention diagnosis (the paper's Figures 2-3, one image)
# ---------------------------------------------------------------------------------------------------------------


def _sequence_length(report: AttentionReport) -> tuple[int, bool]:
    """T, the scale's top: the report's seq_len; for a report without one, the largest value, rounded up."""
    seq_len = report.settings.get("seq_len")
    if isinstance(seq_len, int) and seq_len >= 1:
        return max(seq_len, 2), True
    values = [v for rows in (report.rank, report.mass) for row in rows for v in row if not math.isnan(v)]
    return max(2, math.ceil(max(values, default=2))), False


def _title(report: AttentionReport, seq_len: int, known: bool) -> str:
    settings = report.settings
    name = report.model_name or "model"
    samples = settings.get("num_samples")
    parts = [
        f"N = {samples} samples" if samples is not None else "N not recorded",
        f"T = {seq_len} tokens" if known else "T not recorded",
        f"tau = {settings.get('tau', 0.9):g}",
        f"eta = {settings.get('eta', 0.9):g}",
    ]
    heads = sum(len(row) for row in report.rank)
    lazy = report.lazy_layers
    return (
        f"{name}: attention rank per head and layer\n{', '.join(parts)}\nlazy layers: "
        f"{', '.join(map(str, lazy)) if lazy else 'none'} of {len(report.rank)}; rank-1 heads: "
        f"{len(report.rank_one_heads)} of {heads}"
    )


def attention_figure(report: AttentionReport, angular_span: int = 1) -> Figure:
    """The attention diagnosis of `report` as one figure; the panels share the layer axis, top to bottom:

    1. rank per head: a layers x heads heatmap of the mean rank k*, log colour scale fixed to 1..T (T the report's
       `seq_len`), a dot on each rank-1 head (mean k* < 1.5), a red frame around each lazy layer (MaxRank < 1.5);
    2. MaxRank(l), the largest head rank, on the same fixed 1..T log scale, lazy layers shaded;
    3. AvgMass(l), the mean over heads of the columns holding eta of the attention, on 1..T (1: a sink);
    4. when the report has them, the peers' block measures: Block Influence (ShortGPT) and the angular distance
       of the span of `angular_span` blocks starting at each block (Gromov et al.); low means droppable.

    The title names the model, N (samples), T, tau and eta. The figure grows with the layers and heads, so 48 x 32
    reads as well as 2 x 2. Returns the `Figure` (not saved; see `save_figure`, or `AttentionReport.plot`); its
    panels are labelled "heatmap", "max_rank", "avg_mass" and "block_measures" (`Axes.get_label`).
    """
    _matplotlib()
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle
    from matplotlib.ticker import FuncFormatter

    angular = report.angular_distance(angular_span) if report.angular is not None else None  # checks the span
    top, known = _sequence_length(report)
    rows = len(report.rank)
    heads = max((len(row) for row in report.rank), default=1)
    lazy_rows = [i for i, value in enumerate(report.max_rank) if value < RANK_ONE_BELOW]
    blocks_panel = report.block_influence is not None or angular is not None

    map_height = min(6.0, max(1.3, 0.14 * heads + 0.6))
    curve_height = 1.6
    ratios = [map_height, curve_height, curve_height] + ([curve_height] if blocks_panel else [])
    width = min(26.0, max(8.0, 0.24 * rows + 3.5))
    fig = Figure(figsize=(width, sum(ratios) + 1.3), layout="constrained")
    axes = fig.subplots(len(ratios), 1, gridspec_kw={"height_ratios": ratios})
    ax_map, ax_max, ax_mass = axes[0], axes[1], axes[2]
    for ax, name in zip(axes, ("heatmap", "max_rank", "avg_mass", "block_measures"), strict=False):
        ax.set_label(name)  # `{ax.get_label(): ax for ax in fig.axes}` finds a panel by what it shows
    for ax in (ax_max, ax_mass):
        ax.sharex(ax_map)

    # 1. the heatmap: heads down, layers across; a missing head (ragged rows) is left grey
    grid = [[report.rank[i][h] if h < len(report.rank[i]) else math.nan for i in range(rows)] for h in range(heads)]
    norm = LogNorm(vmin=1.0, vmax=float(top))
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    image = ax_map.imshow(grid, aspect="auto", cmap=cmap, norm=norm, interpolation="nearest", origin="upper")
    bar = fig.colorbar(image, ax=ax_map, pad=0.01, fraction=0.04, aspect=max(5, 4 * map_height))
    bar.set_label("attention rank k*")
    bar.set_ticks(_rank_ticks(top, dense=map_height >= 2.5))
    bar.ax.yaxis.set_major_formatter(FuncFormatter(_integer_format))
    bar.ax.minorticks_off()
    ones = [(i, h) for i, row in enumerate(report.rank) for h, value in enumerate(row) if value < RANK_ONE_BELOW]
    if ones:
        # a dot half a cell wide: the cell's size in points, from the panel's share of the figure
        cell = min(0.85 * width * 72 / rows, 0.8 * map_height * 72 / heads)
        size = min(60.0, max(3.0, (0.45 * cell) ** 2))
        ax_map.scatter(
            [i for i, _ in ones], [h for _, h in ones], s=size, c="white", edgecolors="black", linewidths=0.4
        )
    for i in lazy_rows:
        ax_map.add_patch(Rectangle((i - 0.5, -0.5), 1, heads, fill=False, edgecolor=_LAZY_COLOUR, linewidth=1.5))
    ax_map.set_yticks(_steps(heads, _MAX_HEAD_LABELS))
    ax_map.set_ylabel("head")
    ax_map.set_title("mean rank k* of each head (log colour scale over 1..T)", fontsize="medium", loc="left")

    # 2-3. MaxRank and AvgMass, each on the fixed 1..T scale, lazy layers shaded
    positions = list(range(rows))
    for ax, values, label, colour in (
        (ax_max, report.max_rank, "MaxRank", "tab:blue"),
        (ax_mass, report.avg_mass, "AvgMass", "tab:orange"),
    ):
        ax.plot(positions, values, marker="o", markersize=3.5, color=colour)
        _use_rank_scale(ax, top)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        for i in lazy_rows:
            ax.axvspan(i - 0.5, i + 0.5, color=_LAZY_COLOUR, alpha=0.15, linewidth=0)
    ax_max.axhline(RANK_ONE_BELOW, color="grey", linestyle=":", linewidth=1)
    ax_max.set_title("MaxRank: the largest head rank of the layer", fontsize="medium", loc="left")
    ax_mass.set_title("AvgMass: mean over heads of m* (1: one sink column)", fontsize="medium", loc="left")

    # the shared layer axis: integer positions, labelled with the decoder block of each attention layer
    ticks = _steps(rows, _MAX_LAYER_LABELS)
    ax_map.set_xlim(-0.5, rows - 0.5)
    ax_map.set_xticks(ticks, [str(report.layers[i]) for i in ticks])
    for ax in (ax_map, ax_max, ax_mass):
        ax.tick_params(axis="x", labelsize="small" if rows > 24 else "medium", labelbottom=True)
    for ax in (ax_map, ax_max, ax_mass):
        for i, label in zip(ticks, ax.get_xticklabels(), strict=True):
            if i in lazy_rows:
                label.set_color(_LAZY_COLOUR)
    if not blocks_panel:
        ax_mass.set_xlabel("layer")

    # 4. the peers' block measures, by decoder block
    if blocks_panel:
        _block_panel(axes[3], report, angular, angular_span, ax_map if report.layers == positions else None)

    fig.suptitle(_title(report, top, known), fontsize="medium")
    legend = [
        Line2D(
            [], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="black", label="rank-1 head"
        ),
        Patch(facecolor=_LAZY_COLOUR, alpha=0.3, edgecolor=_LAZY_COLOUR, label="lazy layer (MaxRank < 1.5)"),
        Line2D([], [], color="grey", linestyle=":", label="MaxRank 1.5: lazy below"),
    ]
    if blocks_panel:
        legend += axes[3].get_legend_handles_labels()[0]
    # one legend for every panel, below them all: outside the data, and the panels keep one width
    columns = min(len(legend), 2 if width < 10 else 3 if width < 14 else 5)
    fig.legend(handles=legend, loc="outside lower center", ncols=columns, frameon=False, fontsize="small")
    return fig


def _block_panel(
    ax: Axes, report: AttentionReport, angular: list[float] | None, span: int, shared: Axes | None
) -> None:
    """BI per block and d(x_l, x_{l+n}) per starting block on one axis (both are distances in [0, 1])."""
    lazy = set(report.lazy_layers)
    blocks = report.num_layers
    if report.block_influence is not None:
        ax.plot(
            range(blocks),
            report.block_influence,
            marker="o",
            markersize=3.5,
            color="tab:green",
            label="Block Influence (ShortGPT)",
        )
    if angular is not None:
        ax.plot(
            range(len(angular)),
            angular,
            marker="s",
            markersize=3.5,
            color="tab:purple",
            label=f"angular distance, n={span} (Gromov et al.)",
        )
    if shared is not None:
        ax.sharex(shared)
    else:  # attention layers are not blocks 0..L-1 (a hybrid model): the panel keeps its own block axis
        ticks = _steps(blocks, _MAX_LAYER_LABELS)
        ax.set_xlim(-0.5, blocks - 0.5)
        ax.set_xticks(ticks, [str(t) for t in ticks])
    for tick, label in zip(ax.get_xticks(), ax.get_xticklabels(), strict=True):
        if tick in lazy:
            label.set_color(_LAZY_COLOUR)
    for block in lazy:
        ax.axvspan(block - 0.5, block + 0.5, color=_LAZY_COLOUR, alpha=0.15, linewidth=0)
    values = [v for v in (report.block_influence or []) + (angular or []) if not math.isnan(v)]
    ax.set_ylim(0.0, 1.15 * max(values, default=1.0) or 1.0)
    ax.set_xlabel("block" if shared is None else "layer")
    ax.set_ylabel("distance")
    ax.tick_params(axis="x", labelsize="small" if blocks > 24 else "medium", labelbottom=True)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("the peers' block measures (low: the block changes its input little)", fontsize="medium", loc="left")


# ---------------------------------------------------------------------------------------------------------------
# The loss curves of a run (the paper's Figure 1, as one run saw it)
# ---------------------------------------------------------------------------------------------------------------


def _points(curve: Sequence[Mapping[str, Any]], offset: float = 0) -> tuple[list[float], list[float]]:
    return [offset + point["tokens"] for point in curve], [point["eval_loss"] for point in curve]


def loss_figure(
    rounds: Sequence[Mapping[str, Any]],
    reference_loss: float,
    *,
    run_dir: str | os.PathLike,
    target_loss: float | None = None,
    reference_curve: Sequence[Mapping[str, Any]] | None = None,
    reference_label: str = "reference",
    title: str | None = None,
) -> Figure:
    """Validation loss against training tokens for the rows of `rounds.json` (curves read from `run_dir`).

    - the reference: its own training curve (`reference_curve`, `[{"step", "tokens", "eval_loss"}]`) when the run
      trained it, and always its validation loss, the line the rounds are compared with;
    - each Inheritune round from its step-0 point (the inherited model before training), placed after the tokens
      the earlier rounds spent and, when the reference's curve is known, after the reference's own training tokens
      too: Inheritune needs a trained reference, so its cost starts where the reference's ends; a star where a
      round matched;
    - the same-size random-init baseline from its step 0 (it needs nothing before), dashed, on one round's budget.

    Returns the `Figure` (not saved; `plot_loss_curves` builds and saves it). The legend sits outside the data.
    """
    _matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    run_dir = Path(run_dir)
    target = reference_loss if target_loss is None else target_loss
    curves = []  # (points, style): what both panels draw
    if reference_curve:
        style = {"color": "black", "marker": ".", "linewidth": 1.5, "label": f"{reference_label}: its own training"}
        curves.append((_points(reference_curve), style))
    # Inheritune's compute includes the reference's: the rounds start where the reference's training ended.
    offset = float(reference_curve[-1]["tokens"]) if reference_curve else 0.0
    colours = iter(["tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"] * 10)
    matched = []
    for row in rounds:
        curve = read_json(run_dir / row["eval_curve"])
        if not curve:
            continue
        if row["kind"] == "inheritune":
            xs, ys = _points(curve, offset + row["cumulative_tokens"] - row["tokens"])
            style = {
                "color": next(colours),
                "linewidth": 1.6,
                "label": f"round {row['round']}: {row['layers']} layers",
            }
            if row.get("matched"):
                matched.append((xs[-1], ys[-1]))
        else:
            xs, ys = _points(curve)
            style = {"color": "tab:orange", "linestyle": "--", "label": f"random init, {row['layers']} layers"}
        curves.append(((xs, ys), {"marker": "o", "markersize": 3.5, **style}))

    fig = Figure(figsize=(12.0, 4.8), layout="constrained")
    ax, zoom = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    ax.set_label("losses")
    zoom.set_label("zoom")
    for panel in (ax, zoom):
        for (xs, ys), style in curves:
            panel.plot(xs, ys, **style)
        same = math.isclose(target, reference_loss)
        label = f"{reference_label}: validation loss {reference_loss:.4g}" + (" (the target)" if same else "")
        panel.axhline(reference_loss, color="black", linestyle=":", linewidth=1.2, label=label)
        if not same:
            panel.axhline(target, color="grey", linestyle="-.", linewidth=1.2, label=f"target {target:.4g}")
        if matched:
            panel.scatter(
                *zip(*matched, strict=True),
                marker="*",
                s=220,
                c="gold",
                edgecolors="black",
                linewidths=0.8,
                zorder=5,
                label="round matched",
            )
        rounds_drawn = sum(row["kind"] == "inheritune" for row in rounds)
        if panel is zoom:
            panel.set_xlabel("training tokens")
        elif offset:  # Inheritune's compute includes the reference's training
            panel.set_xlabel("training tokens (the rounds follow the reference's own training)")
        else:
            panel.set_xlabel("training tokens" + (" (rounds placed one after another)" if rounds_drawn > 1 else ""))
        panel.xaxis.set_major_formatter(EngFormatter(sep=""))
        panel.grid(alpha=0.3)
    ax.set_ylabel("validation loss")
    ax.set_title("every evaluation, from step 0 (before training)", fontsize="medium", loc="left")

    # The zoom: the final losses and the reference's, which a step-0 loss near ln(vocabulary) would squeeze into a
    # sliver of the full panel. Curves enter it from the top.
    ends = [ys[-1] for (_, ys), _ in curves] + [reference_loss, target]
    low, high = min(ends), max(ends)
    pad = max(0.5 * (high - low), 0.01 * abs(high), 1e-3)
    zoom.set_ylim(low - pad, high + pad)
    zoom.set_title("the final losses, zoomed", fontsize="medium", loc="left")
    fig.suptitle(title or "Inheritune: validation loss against training tokens", fontsize="medium")
    zoom.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize="small")
    return fig


def plot_attention(report: AttentionReport, path: str | os.PathLike, angular_span: int = 1) -> Path:
    """Save the paper's Figures 2-3 in one image (`attention_figure`): a layers x heads heatmap of rank on a fixed
    log scale 1..T (rank-1 heads dotted, lazy layers framed), MaxRank and AvgMass in panels of their own, and, where
    the report has them, the peers' block measures: Block Influence (ShortGPT) and the angular distance of the span
    of `angular_span` blocks starting at each block (Gromov et al.). Needs matplotlib.

    A function here rather than a method of the report, so that the report never imports the figures. Returns the
    file written (a path without a suffix gets matplotlib's default format's)."""
    return save_figure(attention_figure(report, angular_span), path)


def plot_loss_curves(
    rounds: Sequence[Mapping[str, Any]],
    reference_loss: float,
    path: str | os.PathLike,
    target_loss: float | None = None,
    *,
    reference_curve: Sequence[Mapping[str, Any]] | None = None,
    reference_label: str = "reference",
    title: str | None = None,
    run_dir: str | os.PathLike | None = None,
) -> Path:
    """Build `loss_figure` and save it to `path` atomically; curves are read from `run_dir` (default: `path`'s
    folder, where `run_inheritune` writes the figure beside rounds.json)."""
    path = Path(path)
    fig = loss_figure(
        rounds,
        reference_loss,
        run_dir=path.parent if run_dir is None else run_dir,
        target_loss=target_loss,
        reference_curve=reference_curve,
        reference_label=reference_label,
        title=title,
    )
    return save_figure(fig, path)
