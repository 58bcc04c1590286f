"""The paper's figures: the attention diagnosis (fixed log scale 1..T, separate panels, integer layer ticks) and the
loss curves (the reference's own curve, each round and the baseline from step 0, against training tokens)."""

from __future__ import annotations

import json
import math

import pytest
from _train_setup import blocks, trained_reference, training_args

from inheritune_hf import AttentionReport
from inheritune_hf.errors import InherituneError
from inheritune_hf.inherit import inherit
from inheritune_hf.rounds import run_inheritune
from inheritune_hf.settings import InherituneArguments
from inheritune_hf.train import evaluate_loss

pytest.importorskip("matplotlib")

from matplotlib.colors import LogNorm  # noqa: E402

from inheritune_hf.figures import attention_figure, loss_figure, plot_attention, plot_loss_curves  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def report(layers: int, heads: int, seq_len: int = 100, lazy_from: int | None = None, blocks: bool = True):
    """A report of `layers` x `heads` whose layers from `lazy_from` on attend with rank 1 (and one head before)."""
    lazy_from = layers if lazy_from is None else lazy_from
    rank = [[1.0 if i >= lazy_from else 2.0 + (i * heads + h) % 7 for h in range(heads)] for i in range(layers)]
    if lazy_from > 0:
        rank[0][0] = 1.2  # a rank-1 head in a layer that is not lazy
    extra = {}
    if blocks:
        extra = {
            "block_influence": [0.5 / (b + 1) for b in range(layers)],
            "angular": [[abs(i - j) / (2 * layers) for j in range(layers + 1)] for i in range(layers + 1)],
        }
    return AttentionReport(
        rank=rank,
        mass=[[1.0 + h for h in range(heads)] for _ in range(layers)],
        layers=list(range(layers)),
        layer_names=[f"model.layers.{i}.self_attn" for i in range(layers)],
        num_layers=layers,
        model_name=f"tiny-{layers}x{heads}",
        settings={"tau": 0.9, "eta": 0.9, "num_samples": 37, "seq_len": seq_len},
        **extra,
    )


def panels(fig) -> dict:
    return {ax.get_label(): ax for ax in fig.axes}


def integers(values) -> bool:
    return len(values) > 0 and all(float(v).is_integer() for v in values)


# -- the attention figure -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("layers", "heads", "lazy_from"), [(1, 1, None), (2, 2, 1), (48, 32, 40)])
def test_attention_figure_builds_for_one_two_and_forty_eight_layers(tmp_path, layers, heads, lazy_from):
    data = report(layers, heads, seq_len=64, lazy_from=lazy_from)
    path = plot_attention(data, tmp_path / "attention_rank.png")
    assert path.read_bytes().startswith(PNG_MAGIC) and path.stat().st_size > 10_000

    fig = attention_figure(data)
    found = panels(fig)
    assert {"heatmap", "max_rank", "avg_mass", "block_measures"} <= set(found)
    norm = found["heatmap"].images[0].norm
    assert isinstance(norm, LogNorm) and (norm.vmin, norm.vmax) == (1.0, 64.0)  # fixed 1..T, not auto-ranged
    assert found["heatmap"].images[0].get_array().shape == (heads, layers)  # heads down, layers across
    for name in ("heatmap", "max_rank", "avg_mass", "block_measures"):
        assert integers(found[name].get_xticks()), name
    assert integers(found["heatmap"].get_yticks())  # heads
    for name in ("max_rank", "avg_mass"):  # the same fixed log scale as the colours
        ax = found[name]
        assert ax.get_yscale() == "log" and ax.get_ylim()[0] < 1 and ax.get_ylim()[1] >= 64
    assert len(found["heatmap"].get_xticks()) <= 64


def test_max_rank_and_avg_mass_are_separate_panels_not_twin_axes():
    fig = attention_figure(report(8, 4, lazy_from=6))
    found = panels(fig)
    assert [line.get_ydata().tolist() for line in found["max_rank"].lines if len(line.get_xdata()) == 8] == [
        report(8, 4, lazy_from=6).max_rank
    ]
    assert [line.get_ydata().tolist() for line in found["avg_mass"].lines if len(line.get_xdata()) == 8] == [
        report(8, 4, lazy_from=6).avg_mass
    ]
    positions = {name: found[name].get_position().bounds for name in ("max_rank", "avg_mass")}
    assert positions["max_rank"] != positions["avg_mass"]  # a twin axis would sit exactly on top
    # the three layer panels share one x axis
    assert found["max_rank"].get_shared_x_axes().joined(found["max_rank"], found["heatmap"])
    assert found["avg_mass"].get_shared_x_axes().joined(found["avg_mass"], found["heatmap"])


def test_rank_one_heads_are_dotted_and_lazy_layers_shaded():
    data = report(8, 4, lazy_from=6)
    assert data.lazy_layers == [6, 7] and len(data.rank_one_heads) == 9
    found = panels(attention_figure(data))
    dots = found["heatmap"].collections[0].get_offsets().tolist()
    assert sorted(map(tuple, dots)) == sorted((float(layer), float(h)) for layer, h in data.rank_one_heads)
    framed = [p.get_x() + 0.5 for p in found["heatmap"].patches]
    assert framed == [6.0, 7.0]
    for name in ("max_rank", "avg_mass", "block_measures"):
        shaded = sorted(p.get_x() + p.get_width() / 2 for p in found[name].patches)
        assert shaded == [6.0, 7.0], name


def test_the_title_names_the_model_n_t_and_tau():
    fig = attention_figure(report(4, 2, seq_len=128))
    title = fig.get_suptitle()
    assert "tiny-4x2" in title and "N = 37 samples" in title and "T = 128 tokens" in title and "tau = 0.9" in title


def test_block_measures_panel_only_when_the_report_has_them():
    assert "block_measures" not in panels(attention_figure(report(4, 2, blocks=False)))
    found = panels(attention_figure(report(4, 2), angular_span=2))
    labels = [line.get_label() for line in found["block_measures"].lines]
    assert labels == ["Block Influence (ShortGPT)", "angular distance, n=2 (Gromov et al.)"]
    assert found["block_measures"].lines[1].get_ydata().tolist() == report(4, 2).angular_distance(2)


def test_a_bad_angular_span_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(InherituneError, match="span n"):
        plot_attention(report(4, 2), tmp_path / "bad.png", angular_span=9)
    assert not (tmp_path / "bad.png").exists()


def test_a_report_without_seq_len_scales_to_its_largest_value():
    data = report(2, 2)
    data.settings = {}
    fig = attention_figure(data)
    norm = panels(fig)["heatmap"].images[0].norm
    assert (norm.vmin, norm.vmax) == (1.0, math.ceil(max(max(row) for row in data.rank + data.mass)))
    assert "T not recorded" in fig.get_suptitle()


# -- the loss figure ------------------------------------------------------------------------------------------------


def curve(start: float, end: float, tokens_per_step: int = 100, steps=(0, 10, 20)) -> list[dict]:
    span = steps[-1]
    return [{"step": s, "tokens": s * tokens_per_step, "eval_loss": start + (end - start) * s / span} for s in steps]


def fake_run(folder, baseline: bool = True, matched: bool = True) -> list[dict]:
    """rounds.json rows and eval curves as run_inheritune writes them: two rounds of 2000 tokens, a baseline."""
    rows = []
    for index, (layers, start, end) in enumerate(((2, 6.0, 5.4), (4, 5.5, 4.9)), start=1):
        (folder / f"round-{index}-{layers}L").mkdir(parents=True)
        (folder / f"round-{index}-{layers}L" / "eval_curve.json").write_text(json.dumps(curve(start, end)))
        rows.append(
            {
                "kind": "inheritune",
                "round": index,
                "layers": layers,
                "tokens": 2000,
                "cumulative_tokens": 2000 * index,
                "val_loss": end,
                "matched": matched and index == 2,
                "eval_curve": f"round-{index}-{layers}L/eval_curve.json",
            }
        )
    if baseline:
        (folder / "baseline-4L").mkdir()
        (folder / "baseline-4L" / "eval_curve.json").write_text(json.dumps(curve(7.6, 5.6)))
        rows.append(
            {
                "kind": "random_baseline",
                "round": None,
                "layers": 4,
                "tokens": 2000,
                "cumulative_tokens": 2000,
                "val_loss": 5.6,
                "matched": False,
                "eval_curve": "baseline-4L/eval_curve.json",
            }
        )
    return rows


def lines_by_label(fig, panel: str = "losses") -> dict:
    return {line.get_label(): line for line in panels(fig)[panel].lines}


@pytest.mark.parametrize("baseline", [True, False])
@pytest.mark.parametrize("with_reference_curve", [True, False])
def test_loss_figure_draws_each_curve_from_step_0_against_tokens(tmp_path, baseline, with_reference_curve):
    rows = fake_run(tmp_path, baseline=baseline)
    reference_curve = curve(7.6, 5.0, steps=(0, 10, 20, 30)) if with_reference_curve else None
    path = plot_loss_curves(rows, 5.0, tmp_path / "loss_curves.png", reference_curve=reference_curve)
    assert path.read_bytes().startswith(PNG_MAGIC) and path.stat().st_size > 10_000

    fig = loss_figure(rows, 5.0, run_dir=tmp_path, reference_curve=reference_curve)
    lines = lines_by_label(fig)
    first, second = lines["round 1: 2 layers"], lines["round 2: 4 layers"]
    offset = 3000 if with_reference_curve else 0  # a reference trained here: Inheritune's cost starts after it
    assert first.get_xdata().tolist() == [offset + x for x in (0, 1000, 2000)]
    assert first.get_ydata()[0] == 6.0  # step 0: as inherited
    assert second.get_xdata().tolist() == [offset + x for x in (2000, 3000, 4000)]  # after round 1's tokens
    assert ("random init, 4 layers" in lines) == baseline
    if baseline:
        assert lines["random init, 4 layers"].get_xdata().tolist() == [0, 1000, 2000]
    reference = lines.get("reference: its own training")
    assert (reference is not None) == with_reference_curve
    if with_reference_curve:
        assert reference.get_xdata().tolist() == [0, 1000, 2000, 3000] and reference.get_ydata()[-1] == 5.0
    level = lines["reference: validation loss 5 (the target)"]
    assert list(level.get_ydata()) == [5.0, 5.0]  # always: the line the rounds are compared with
    zoom = panels(fig)["zoom"]
    assert lines_by_label(fig, "zoom").keys() == lines.keys()  # the same curves, zoomed on the final losses
    ends = [line.get_ydata()[-1] for line in lines.values()]
    assert zoom.get_ylim()[0] < min(ends) and zoom.get_ylim()[1] > max(ends)
    legend = zoom.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > zoom.get_window_extent().x1  # outside the data


def test_a_star_marks_the_round_that_matched(tmp_path):
    fig = loss_figure(fake_run(tmp_path), 5.0, run_dir=tmp_path)
    stars = [c for c in panels(fig)["losses"].collections if c.get_label() == "round matched"]
    assert len(stars) == 1 and stars[0].get_offsets().tolist() == [[4000.0, 4.9]]

    unmatched = loss_figure(fake_run(tmp_path / "again", matched=False), 5.0, run_dir=tmp_path / "again")
    assert not [c for c in panels(unmatched)["losses"].collections if c.get_label() == "round matched"]


def test_a_target_other_than_the_reference_gets_its_own_line(tmp_path):
    fig = loss_figure(fake_run(tmp_path), 5.0, run_dir=tmp_path, target_loss=5.2)
    lines = lines_by_label(fig)
    assert "reference: validation loss 5" in lines and list(lines["target 5.2"].get_ydata()) == [5.2, 5.2]


# -- what a run records for the figure ------------------------------------------------------------------------------


def test_a_run_records_each_rounds_step_0_loss_and_the_reference_curve(tmp_path):
    out = tmp_path / "run"
    train_blocks, val_blocks = blocks()
    reference = trained_reference()
    reference_curve = [{"step": 0, "tokens": 0, "eval_loss": 9.0}, {"step": 40, "tokens": 10240, "eval_loss": 5.0}]
    args = InherituneArguments(start_layers=2, max_layers=2, random_baseline=True, target_loss="0")
    result = run_inheritune(
        reference, train_blocks, val_blocks, args, training_args(out), reference_curve=reference_curve
    )
    inherited = evaluate_loss(inherit(reference, 2), val_blocks, training_args(tmp_path / "scratch"))
    for row in result.rounds + [result.baseline]:
        points = json.loads((out / row.eval_curve).read_text())
        assert [p["step"] for p in points] == [0, 4, 8, 12]
        assert points[0]["tokens"] == 0
    round_1 = json.loads((out / result.rounds[0].eval_curve).read_text())
    assert round_1[0]["eval_loss"] == pytest.approx(inherited, rel=1e-6)  # the inherited model, before training
    assert json.loads((out / "run.json").read_text())["reference_curve"] == reference_curve
    assert (out / "loss_curves.png").read_bytes().startswith(PNG_MAGIC)


def test_the_step_0_evaluation_does_not_end_a_round_before_it_trains(tmp_path):
    train_blocks, val_blocks = blocks()
    # any model beats a target of 100, the inherited one before its first step too
    args = InherituneArguments(start_layers=2, reference_loss=100.0, stop_at_target=True, plot=False)
    result = run_inheritune(trained_reference(), train_blocks, val_blocks, args, training_args(tmp_path / "run"))
    assert result.matched and result.rounds[0].steps == 4  # stopped at the first evaluation after training


def test_the_step_0_evaluation_does_not_end_until_target_distillation(tmp_path):
    train_blocks, val_blocks = blocks()
    # the target of 100 is met before the first step: distillation still runs until the first evaluation after it
    args = InherituneArguments(
        start_layers=2, reference_loss=100.0, distillation_weight=0.5, distillation_schedule="until_target", plot=False
    )
    result = run_inheritune(trained_reference(), train_blocks, val_blocks, args, training_args(tmp_path / "run"))
    row = result.rounds[0]
    assert json.loads((tmp_path / "run" / row.eval_curve).read_text())[0]["step"] == 0
    assert row.teacher_tokens == 4 * 8 * 32  # steps 0-3 ran the teacher; from the step-4 evaluation on, plain
