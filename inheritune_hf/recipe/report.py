"""`report.md`: the recipe's comparison table, the paper's Table 1 in miniature, and the attention diagnosis.

Rendering only: `format_report` takes the rows a run measured (or any rows a notebook user builds) and returns
Markdown; the caller writes it (atomically) and prints it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..markdown import cell
from ..verdict import random_baseline, weak_reference

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from ..analyze import AttentionReport
    from ..evaluate import DownstreamResults

REPORT_FILE = "report.md"


def format_report(
    name: str,
    rows: Sequence[Mapping[str, Any]],
    results_by_name: Mapping[str, DownstreamResults | None],
    matched: bool,
    *,
    analysis: AttentionReport | None = None,
    reference_config: PretrainedConfig | None = None,
    reference_source: str | None = None,
) -> str:
    """report.md's text: the comparison table (layers, params, val loss, tokens, downstream scores) and verdict.

    `rows` hold `model`, `layers`, `params`, `val_loss` and `tokens` (the reference first, then Inheritune and the
    random-init baseline), and `kind` and `matched` as rounds.json has them: when the baseline matched too, the
    verdict says the reference is too weak to show the method's benefit, and where the reference's tokens are known
    a column adds them to Inheritune's (the compute it really needs); `results_by_name` maps a row's `model` to its lm-eval scores, if it was scored.
    With the reference's attention `analysis`, the lazy layers and the suggested starting depths are added (moved to
    depths `reference_config`'s layer pattern allows, when given).
    """
    metrics = []
    for results in results_by_name.values():
        for row in results.rows if results else []:
            key = (row.task, row.metric)
            if key not in metrics:
                metrics.append(key)
    # Inheritune needs a trained reference: where the run trained it, the compute compared includes its tokens.
    reference_tokens = next((row.get("tokens") for row in rows if row.get("kind") == "reference"), None)
    with_reference = ["tokens incl. reference's"] if reference_tokens else []
    header = ["model", "layers", "params", "val loss", "train tokens", *with_reference]
    header += [f"{t} {m}" for t, m in metrics]
    lines = [f"# {name}: Inheritune vs. its reference and the random-init baseline", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        results = results_by_name.get(row["model"])
        scores = []
        for task, metric in metrics:
            try:
                scores.append(cell(results.get(task, metric).value) if results else "")
            except (KeyError, ValueError):
                scores.append("")
        cells = [row["model"], row["layers"], f"{row['params'] / 1e6:.2f}M", row["val_loss"], row["tokens"]]
        if with_reference:
            inherits = row.get("kind") == "inheritune" and row.get("tokens") is not None
            cells.append(row["tokens"] + reference_tokens if inherits else row.get("tokens"))
        lines.append("| " + " | ".join(cell(c) for c in cells + scores) + " |")
    caveat = weak_reference(rows, reference_tokens) if matched else None
    lines += ["", _verdict(rows, matched) + (f" {caveat}" if caveat else "")]
    lines += _chance_notes(results_by_name)
    if analysis is not None:
        lazy = analysis.lazy_layers
        lines += [
            "",
            f"Attention diagnosis of the reference: lazy (rank-1) layers {lazy or 'none'} of {len(analysis.max_rank)};"
            f" {100 * analysis.rank_one_fraction:.0f}% of heads near rank 1. See `analysis/attention_rank.png`.",
        ]
        for key, suggestion in analysis.suggest_num_layers(reference_config).items():
            lines.append(f"- suggested start ({key}): {suggestion.num_layers} layers: {suggestion.reason}")
    lines += [
        "",
        f"Reference: {reference_source}.",
        "Figures: `analysis/attention_rank.png`, `inheritune/loss_curves.png`. Model folder with its card: `model/`.",
    ]
    return "\n".join(lines) + "\n"


def _verdict(rows: Sequence[Mapping[str, Any]], matched: bool) -> str:
    """The verdict with its evidence: both losses and depths, and where the run trained one, whether the same-size
    random-init model reached the target too (`weak_reference` adds what that means)."""
    verdict = "matched" if matched else "did NOT match"
    sentence = f"Inheritune {verdict} the reference's validation loss"
    reference = next((row for row in rows if row.get("kind") == "reference"), None)
    final = next((row for row in reversed(rows) if row.get("kind") == "inheritune"), None)
    if reference is None or final is None or None in (reference.get("val_loss"), final.get("val_loss")):
        return sentence + "."
    sentence += (
        f": {cell(float(final['val_loss']))} with {final['layers']} layers against "
        f"{cell(float(reference['val_loss']))} with {reference['layers']}."
    )
    baseline = random_baseline(rows)
    if baseline is not None and baseline.get("val_loss") is not None and not baseline.get("matched"):
        sentence += (
            f" The same-size random-init model, on one round's budget, did not reach it "
            f"({cell(float(baseline['val_loss']))})."
        )
    return sentence


def _chance_notes(results_by_name: Mapping[str, DownstreamResults | None]) -> list[str]:
    """One paragraph for every score at or below chance, across the models (each task's chance level named once),
    and a model's own note where only its average is at chance."""
    flagged, levels, own = [], {}, []
    for model, results in results_by_name.items():
        if results is None or results.chance_note() is None:
            continue
        rows = results.no_signal()
        if not rows:
            own.append(f"{model}: {results.chance_note()}")
            continue
        flagged.append(f"{model} " + ", ".join(f"{row.task} {row.metric} {100 * row.value:.2f}" for row in rows))
        levels.update({row.task: results.chance(row.task) for row in rows})
    lines = []
    if flagged:
        chance = ", ".join(f"{task} {100 * level:.2f}" for task, level in levels.items())
        lines += [
            "",
            f"At or below chance ({chance}), so carrying no signal: {'; '.join(flagged)}. These models have not "
            "learned what these tasks measure; compare such scores only once they rise above chance.",
        ]
    return lines + [text for note in own for text in ("", note)]
