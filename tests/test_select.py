"""Which blocks to keep: Block Influence and angular distance come out of analyze_attention's one forward pass, equal
an independent computation, and `select_layers` keeps the blocks a constructed model demands under each criterion."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch
from test_analyze import force_sink
from tiny_models import tiny_model

import inheritune_hf.analyze.run as analyze_run
from inheritune_hf import (
    AttentionReport,
    InherituneError,
    analyze_attention,
    find_decoder_layers,
    inherit,
    select_layers,
)
from inheritune_hf.analyze import LayerSelection
from inheritune_hf.cli import main
from inheritune_hf.errors import InvalidLayersError
from inheritune_hf.figures import plot_attention

VOCAB = 97


MODELS = {
    family: functools.partial(tiny_model, kind)
    for family, kind in [("llama", "llama"), ("gpt2", "gpt2"), ("qwen2_gqa", "qwen2")]
}


def samples(n: int = 6, t: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, t), generator=torch.Generator().manual_seed(seed))


def report_of(model, ids: torch.Tensor, batch_size: int = 4) -> AttentionReport:
    return analyze_attention(
        model, input_ids=ids, num_samples=ids.shape[0], seq_len=ids.shape[1], batch_size=batch_size, progress=False
    )


def independent_boundaries(model, ids: torch.Tensor) -> list[np.ndarray]:
    """x_0 .. x_L in float64, from plain hooks: each block's input, and the last block's output (no final norm)."""
    inputs, outputs = {}, {}
    blocks = find_decoder_layers(model).layers

    def before(i):
        def hook(module, args, kwargs):
            inputs[i] = args[0] if args else kwargs["hidden_states"]

        return hook

    def after(i):
        def hook(module, args, output):
            outputs[i] = output[0] if isinstance(output, tuple) else output

        return hook

    handles = [b.register_forward_pre_hook(before(i), with_kwargs=True) for i, b in enumerate(blocks)]
    handles += [b.register_forward_hook(after(i)) for i, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    states = [inputs[i] for i in range(len(blocks))] + [outputs[len(blocks) - 1]]
    return [state.double().numpy() for state in states]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("family", list(MODELS))
def test_block_influence_and_angular_distance_equal_an_independent_numpy_computation(family):
    model, ids = MODELS[family](), samples()
    report = report_of(model, ids)
    x = independent_boundaries(model, ids)
    num_blocks = len(x) - 1
    assert report.num_layers == num_blocks
    # ShortGPT: BI_l = 1 - mean over every token of every sample of cos(x_l, y_l), y_l = x_{l+1}.
    want_bi = [1.0 - cosine(x[b], x[b + 1]).mean() for b in range(num_blocks)]
    assert report.block_influence == pytest.approx(want_bi, abs=2e-6)
    # Gromov et al.: arccos(cos) / pi of the last token, averaged over samples, for every span n.
    for n in range(1, num_blocks + 1):
        want = [
            np.mean(np.arccos(np.clip(cosine(x[s][:, -1], x[s + n][:, -1]), -1, 1)) / math.pi)
            for s in range(len(x) - n)
        ]
        assert report.angular_distance(n) == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_rank_and_mass_are_unchanged_by_the_block_hooks(family, monkeypatch):
    model, ids = MODELS[family](), samples()
    with_blocks = report_of(model, ids)
    monkeypatch.setattr(analyze_run, "block_states", lambda model: None)
    without = report_of(model, ids)
    assert without.block_influence is None and with_blocks.block_influence is not None
    assert with_blocks.rank == without.rank and with_blocks.mass == without.mass


def identity_blocks(model, blocks: list[int]):
    """Zero the output projections of `blocks` (attention and MLP): each block then returns its input, y = x."""
    stack = find_decoder_layers(model).layers
    with torch.no_grad():
        for b in blocks:
            stack[b].self_attn.o_proj.weight.zero_()
            stack[b].mlp.down_proj.weight.zero_()
    return model


def test_identity_blocks_have_block_influence_zero_and_are_dropped_first():
    model = identity_blocks(tiny_model("llama", 6), [1, 4])
    report = report_of(model, samples())
    assert report.block_influence[1] == pytest.approx(0.0, abs=1e-6)
    assert report.block_influence[4] == pytest.approx(0.0, abs=1e-6)
    assert min(report.block_influence[b] for b in (0, 2, 3, 5)) > 1e-3
    selection = select_layers(report, 4, "block_influence")
    assert list(selection) == [0, 2, 3, 5] and selection.dropped == (1, 4)
    assert "Block Influence" in selection.reason and "[1, 4]" in selection.reason


def test_angular_drops_the_contiguous_span_that_is_an_identity_map():
    model = identity_blocks(tiny_model("llama", 6), [2, 3])
    report = report_of(model, samples())
    assert report.angular_distance(2)[2] == pytest.approx(0.0, abs=1e-6)
    selection = select_layers(report, 4, "angular")
    assert list(selection) == [0, 1, 4, 5]
    assert "blocks 2..3" in selection.reason


def test_rank_drops_the_forced_sink_layers():
    model = tiny_model("gpt2", 4, n_embd=64, initializer_range=0.3)
    force_sink(model, [0, 2])
    report = report_of(model, samples(t=32))
    assert report.lazy_layers == [0, 2]
    selection = select_layers(report, 2, "rank")
    assert list(selection) == [1, 3] and selection.dropped == (0, 2)
    assert "2 lazy" in selection.reason


def test_prefix_is_the_papers_first_k_whatever_the_measures_say():
    report = report_of(identity_blocks(tiny_model("llama", 6), [0, 1]), samples())
    selection = select_layers(report, 3, "prefix")
    assert list(selection) == [0, 1, 2] and selection.dropped == (3, 4, 5)


def test_inherit_takes_a_selection_as_its_layers():
    model = identity_blocks(tiny_model("llama", 6), [1, 4])
    selection = select_layers(report_of(model, samples()), 4, "block_influence")
    target = inherit(model, layers=selection)
    assert target.config.inheritune["source_layers"] == [0, 2, 3, 5]
    source, got = find_decoder_layers(model).layers, find_decoder_layers(target).layers
    assert torch.equal(got[1].mlp.down_proj.weight, source[2].mlp.down_proj.weight)


def test_a_selection_is_a_sorted_tuple_that_survives_pickling():
    import pickle

    selection = LayerSelection([3, 0, 1], "rank", "why", [2])
    assert selection == (0, 1, 3) and selection.layers == [0, 1, 3]
    copy = pickle.loads(pickle.dumps(selection))
    assert copy == selection and copy.reason == "why" and copy.dropped == (2,)


def test_reports_round_trip_the_block_measures_through_json_and_csv(tmp_path):
    report = report_of(tiny_model("llama"), samples())
    back = AttentionReport.from_json(report.to_json())
    assert back.block_influence == report.block_influence and back.angular == report.angular
    report.to_csv(tmp_path / "r.csv")
    header, first = (tmp_path / "r.csv").read_text().splitlines()[:2]
    assert header.endswith("block_influence,angular_distance_1")
    assert float(first.split(",")[-2]) == pytest.approx(report.block_influence[0])
    assert float(first.split(",")[-1]) == pytest.approx(report.angular_distance(1)[0])


def test_an_older_report_without_block_measures_loads_and_says_what_to_do():
    data = json.loads(report_of(tiny_model("llama"), samples()).to_json())
    for key in ("block_influence", "angular", "angular_distance_1"):
        data.pop(key)
    old = AttentionReport.from_dict(data)
    assert select_layers(old, 2, "prefix") == (0, 1)  # rank and prefix need nothing new
    assert len(select_layers(old, 2, "rank")) == 2
    with pytest.raises(InvalidLayersError, match="no Block Influence"):
        select_layers(old, 2, "block_influence")
    with pytest.raises(InvalidLayersError, match="no angular"):
        select_layers(old, 2, "angular")
    with pytest.raises(InherituneError, match="no angular"):
        old.angular_distance(1)


def test_bad_criterion_and_depth_are_refused():
    report = report_of(tiny_model("llama"), samples())
    with pytest.raises(InvalidLayersError, match="criterion must be one of"):
        select_layers(report, 2, "random")
    with pytest.raises(InvalidLayersError, match="choose 1..4"):
        select_layers(report, 5, "prefix")
    with pytest.raises(InherituneError, match="span n"):
        report.angular_distance(5)


def test_plot_has_the_block_measures_panel(tmp_path):
    report = report_of(tiny_model("llama"), samples())
    path = plot_attention(report, tmp_path / "figure.png", angular_span=2)
    assert path.stat().st_size > 1000
    with pytest.raises(InherituneError, match="span n"):
        plot_attention(report, tmp_path / "bad.png", angular_span=9)
    assert not (tmp_path / "bad.png").exists()


# -- the CLI --------------------------------------------------------------------------------------------------------


@pytest.fixture
def analyzed(tmp_path):
    """A 6-block llama with identity blocks 1 and 4, saved, and the report `inheritune analyze` would write."""
    model = identity_blocks(tiny_model("llama", 6), [1, 4])
    model.save_pretrained(tmp_path / "src")
    (tmp_path / "analysis").mkdir()
    report_of(model, samples()).to_json(tmp_path / "analysis" / "report.json")
    return tmp_path


def test_cli_inherit_selects_by_block_influence_from_the_report(analyzed, capsys):
    out = analyzed / "out"
    argv = ["inherit", str(analyzed / "src"), str(out), "--num-layers", "4", "--select", "block_influence"]
    assert main([*argv, "--report", str(analyzed / "analysis")]) == 0
    assert json.loads((out / "config.json").read_text())["inheritune"]["source_layers"] == [0, 2, 3, 5]
    assert "selected blocks [0, 2, 3, 5] by block_influence" in capsys.readouterr().out


def test_cli_select_needs_a_report_and_a_matching_one(analyzed, capsys):
    src, out = str(analyzed / "src"), str(analyzed / "out")
    assert main(["inherit", src, out, "--num-layers", "4", "--select", "rank"]) == 2
    assert "--report DIR" in capsys.readouterr().err
    (analyzed / "other").mkdir()
    report_of(tiny_model("llama", 4), samples()).to_json(analyzed / "other" / "report.json")
    assert main(["inherit", src, out, "--select", "rank", "--report", str(analyzed / "other")]) == 2
    assert "4 blocks but" in capsys.readouterr().err
    assert not (analyzed / "out").exists()
