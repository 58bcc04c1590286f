"""grow and run_inheritune: growth by 2 blocks ("restart" / "continue") and the Inheritune loop on disk."""

from __future__ import annotations

import json

import pytest
import torch
from _train_setup import blocks, tiny_model, trained_reference, training_args
from harness import tiny_config
from transformers import AutoModelForCausalLM

from inheritune_hf.errors import OutputExistsError, TrainingError
from inheritune_hf.inherit import grow, inherit
from inheritune_hf.rounds import RoundRecord, round_depths, run_inheritune
from inheritune_hf.settings import InherituneArguments
from inheritune_hf.slicing import valid_num_layers
from inheritune_hf.train import evaluate_loss


def block_state(model, index: int) -> dict[str, torch.Tensor]:
    return model.transformer.h[index].state_dict()


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equal(b[name]), name


def trained_copy(model):
    """Stand-in for a trained round: every weight moved away from the reference's."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return model


def test_continue_keeps_the_trained_blocks_exactly_and_appends_the_references_next_blocks():
    reference = tiny_model(4, seed=1)
    small = trained_copy(inherit(reference, 2))
    grown = grow(small, reference, 2, "continue")
    assert grown.config.n_layer == 4 and len(grown.transformer.h) == 4
    for i in (0, 1):
        assert_same(block_state(grown, i), block_state(small, i))
    for i in (2, 3):
        assert_same(block_state(grown, i), block_state(reference, i))
    assert grown.transformer.wte.weight.equal(small.transformer.wte.weight)
    assert grown.transformer.ln_f.weight.equal(small.transformer.ln_f.weight)
    assert grown.lm_head.weight.data_ptr() == grown.transformer.wte.weight.data_ptr()  # still tied
    assert [block.attn.layer_idx for block in grown.transformer.h] == [0, 1, 2, 3]
    assert grown.config.inheritune["grown_from"] == {
        "strategy": "continue",
        "kept_layers": 2,
        "new_source_layers": [2, 3],
    }


def test_restart_is_a_fresh_inherit_of_the_first_l_plus_2_blocks():
    reference = tiny_model(4, seed=1)
    small = trained_copy(inherit(reference, 2))
    grown = grow(small, reference, 2, "restart")
    assert_same(grown.state_dict(), inherit(reference, 4).state_dict())
    assert grown.config.inheritune["source_layers"] == [0, 1, 2, 3]
    assert [block.attn.layer_idx for block in grown.transformer.h] == [0, 1, 2, 3]


def test_growth_beyond_the_references_depth_is_rejected():
    reference = tiny_model(4, seed=1)
    with pytest.raises(TrainingError, match="the reference has only 4"):
        grow(inherit(reference, 3), reference, 2)
    with pytest.raises(TrainingError, match="strategy"):
        grow(inherit(reference, 2), reference, 2, "stack")


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    """A run that cannot match (target 0), so it grows 2 -> 4 blocks, with the random-init baseline."""
    out = tmp_path_factory.mktemp("inheritune") / "run"
    train_blocks, val_blocks = blocks()
    args = InherituneArguments(start_layers=2, target_loss="0", random_baseline=True)
    result = run_inheritune(
        trained_reference(), train_blocks, val_blocks, args, training_args(out), metadata={"note": "test"}
    )
    return out, result


def test_the_loop_runs_two_rounds_growing_from_2_to_4_blocks(two_rounds):
    out, result = two_rounds
    assert [row.layers for row in result.rounds] == [2, 4]
    assert [row.strategy for row in result.rounds] == ["inherit", "restart"]
    assert result.model.config.n_layer == 4
    assert not result.matched
    for name, layers in (("round-1-2L", 2), ("round-2-4L", 4), ("baseline-4L", 4)):
        config = json.loads((out / name / "model" / "config.json").read_text())
        assert config["n_layer"] == layers
        assert (out / name / "model" / "model.safetensors").is_file()
        assert json.loads((out / name / "eval_curve.json").read_text())
    assert (out / "loss_curves.png").stat().st_size > 0


def test_rounds_json_is_the_table_of_rounds(two_rounds):
    out, result = two_rounds
    table = json.loads((out / "rounds.json").read_text())
    rounds = [row for row in table if row["kind"] == "inheritune"]
    assert rounds == [row.to_dict() for row in result.rounds]
    assert [RoundRecord.from_dict(row) for row in table] == [*result.rounds, result.baseline]
    reference_loss = evaluate_loss(trained_reference(), blocks()[1], training_args(out / "scratch"))
    tokens_per_round = 12 * 8 * 32
    for index, row in enumerate(rounds, start=1):
        curve = json.loads((out / row["eval_curve"]).read_text())
        assert row["round"] == index
        assert row["steps"] == 12 and row["tokens"] == tokens_per_round
        assert row["cumulative_tokens"] == index * tokens_per_round
        assert row["val_loss"] == curve[-1]["eval_loss"]
        assert row["reference_val_loss"] == pytest.approx(reference_loss, rel=1e-6)
        assert row["target_loss"] == 0.0 and row["matched"] is False
    assert rounds[0]["source_layers"] == [0, 1] and rounds[1]["source_layers"] == [0, 1, 2, 3]
    baseline = [row for row in table if row["kind"] == "random_baseline"]
    assert len(baseline) == 1 and baseline[0]["layers"] == 4 and baseline[0]["tokens"] == tokens_per_round
    run = json.loads((out / "run.json").read_text())
    assert run["metadata"] == {"note": "test"} and run["reference_loss"] == pytest.approx(reference_loss, rel=1e-6)


def test_a_rounds_json_row_of_another_shape_is_refused_with_what_to_do(two_rounds):
    out, _ = two_rounds
    row = json.loads((out / "rounds.json").read_text())[0]
    assert RoundRecord.from_dict(row).to_dict() == row
    with pytest.raises(TrainingError, match=r"unknown \['speed'\], missing \['eval_curve'\]"):
        RoundRecord.from_dict({**{k: v for k, v in row.items() if k != "eval_curve"}, "speed": 1.0})


def test_a_round_that_matches_the_reference_ends_the_loop(tmp_path):
    train_blocks, val_blocks = blocks()
    args = InherituneArguments(start_layers=2, reference_loss=100.0, plot=False)  # any trained model beats 100
    result = run_inheritune(
        trained_reference(), train_blocks, val_blocks, args, training_args(tmp_path / "run", max_steps=4)
    )
    assert [row.layers for row in result.rounds] == [2]
    assert result.matched and result.rounds[0].target_loss == 100.0
    assert not (tmp_path / "run" / "round-2-4L").exists()


def test_continue_growth_in_the_loop(tmp_path):
    train_blocks, val_blocks = blocks()
    args = InherituneArguments(
        start_layers=2, target_loss="0", growth_strategy="continue", stop_at_target=True, plot=False
    )
    result = run_inheritune(
        trained_reference(), train_blocks, val_blocks, args, training_args(tmp_path / "run", max_steps=4)
    )
    assert [row.strategy for row in result.rounds] == ["inherit", "continue"]
    assert result.model.config.inheritune["grown_from"]["kept_layers"] == 2


def test_growth_rounds_take_their_own_peak_learning_rate_and_warmup(tmp_path):
    from transformers import TrainerCallback

    class Rates(TrainerCallback):
        def __init__(self):
            self.by_round: dict[str, list[float]] = {}

        def on_step_begin(self, args, state, control, lr_scheduler=None, **kwargs):
            self.by_round.setdefault(args.output_dir, []).append(lr_scheduler.get_last_lr()[0])

    rates = Rates()
    train_blocks, val_blocks = blocks()
    args = InherituneArguments(
        start_layers=2, target_loss="0", growth_strategy="continue", growth_lr_scale=0.25, growth_warmup_steps=0,
        plot=False,
    )  # fmt: skip
    out = tmp_path / "run"
    run_inheritune(
        trained_reference(), train_blocks, val_blocks, args, training_args(out, max_steps=6), callbacks=[rates]
    )
    first, second = rates.by_round[str(out / "round-1-2L")], rates.by_round[str(out / "round-2-4L")]
    assert first[0] == 0.0 and max(first) == pytest.approx(3e-3)  # round 1: warmup 2, then the full peak
    assert second[0] == pytest.approx(0.25 * 3e-3) == max(second)  # growth round: no warmup, a quarter of it
    assert second == sorted(second, reverse=True)  # and cosine decay from there
    with pytest.raises(TrainingError, match="growth_lr_scale"):
        InherituneArguments(growth_lr_scale=0)


def test_resuming_a_folder_made_with_another_config_is_rejected_before_training(tmp_path):
    train_blocks, val_blocks = blocks()
    out = tmp_path / "run"
    first = InherituneArguments(start_layers=2, reference_loss=100.0, plot=False)
    run_inheritune(trained_reference(), train_blocks, val_blocks, first, training_args(out, max_steps=4))
    table = (out / "rounds.json").read_text()
    changed = InherituneArguments(start_layers=2, reference_loss=100.0, plot=False, grow_by=1, resume=True)
    with pytest.raises(TrainingError, match="grow_by"):
        run_inheritune(trained_reference(), train_blocks, val_blocks, changed, training_args(out, max_steps=4))
    same = InherituneArguments(start_layers=2, reference_loss=100.0, plot=False, resume=True)
    with pytest.raises(TrainingError, match="learning_rate"):
        run_inheritune(
            trained_reference(), train_blocks, val_blocks, same, training_args(out, max_steps=4, learning_rate=1e-3)
        )
    assert (out / "rounds.json").read_text() == table


def test_a_non_empty_output_folder_is_refused_without_resume_or_overwrite(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something").write_text("x")
    train_blocks, val_blocks = blocks()
    with pytest.raises(OutputExistsError):
        run_inheritune(
            trained_reference(), train_blocks, val_blocks, InherituneArguments(), training_args(tmp_path / "run")
        )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"start_layers": 5}, "outside 1..4"),
        ({"start_layers": 2, "max_layers": 6}, "cannot grow beyond the reference"),
    ],
)
def test_layer_counts_beyond_the_reference_are_rejected(tmp_path, settings, message):
    train_blocks, val_blocks = blocks()
    with pytest.raises(TrainingError, match=message):
        run_inheritune(
            trained_reference(), train_blocks, val_blocks, InherituneArguments(**settings), training_args(tmp_path)
        )


def test_round_depths_are_l_half_then_plus_grow_by_up_to_the_reference():
    config = tiny_model(6).config
    assert round_depths(config) == [3, 5, 6]
    assert round_depths(config, start_layers=2, grow_by=2, max_layers=4) == [2, 4]
    assert round_depths(config, grow_by=1) == [3, 4, 5, 6]


def test_round_depths_move_to_the_depths_the_layer_pattern_allows():
    config = tiny_config("gemma4_text", num_layers=18)  # 5 sliding + 1 full, three times; the last must be full
    assert valid_num_layers(config) == [6, 12, 18]
    assert round_depths(config) == [12, 18]  # L/2 = 9 sits between 6 and 12: the larger, then the next allowed
    assert round_depths(config, start_layers=6) == [6, 12, 18]
    with pytest.raises(TrainingError, match=r"start_layers=9 .* one of \[6, 12, 18\] \(nearest: 12\)"):
        round_depths(config, start_layers=9)


def test_run_refuses_a_start_the_layer_pattern_does_not_allow_before_writing(tmp_path):
    config = tiny_config("gemma4_text", num_layers=12)
    reference = AutoModelForCausalLM.from_config(config)
    out = tmp_path / "run"
    train_blocks, eval_blocks = blocks()
    with pytest.raises(TrainingError, match="one of \\[6, 12\\]"):
        run_inheritune(reference, train_blocks, eval_blocks, InherituneArguments(start_layers=4), training_args(out))
    assert not out.exists()
