"""`inheritune run`: flags or a YAML recipe, parsed by HfArgumentParser, then the library's loop."""

from __future__ import annotations

import json

import pytest
from _train_setup import BLOCK, CORPUS_BYTES, tokenizer, trained_reference

from inheritune_hf.cli import main
from inheritune_hf.errors import TrainingError


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    trained_reference().save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return folder


def common_flags(reference_dir, out) -> list[str]:
    return [
        "--reference_model", str(reference_dir), "--output_dir", str(out),
        "--corpus_max_bytes", str(CORPUS_BYTES), "--validation_fraction", "0.2", "--block_size", str(BLOCK),
        "--max_steps", "4", "--per_device_train_batch_size", "8", "--eval_strategy", "steps", "--eval_steps", "2",
        "--save_strategy", "no", "--use_cpu", "--report_to", "none", "--disable_tqdm", "true", "--no_plot",
    ]  # fmt: skip


def test_run_from_flags_writes_the_rounds_table(reference_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", *common_flags(reference_dir, out), "--start_layers", "2", "--target_loss", "0"])
    assert code == 0
    rounds = json.loads((out / "rounds.json").read_text())
    assert [row["layers"] for row in rounds] == [2, 4]
    run = json.loads((out / "run.json").read_text())
    assert run["metadata"]["data"]["source"] == "python-docs"
    assert run["metadata"]["data"]["fingerprint"]["train"]["documents"] > 0
    printed = capsys.readouterr().out
    assert "round 2: 4 layers" in printed
    # the run narrates each stage in one line: the reference, each round before and after it trains
    narrated = [line for line in printed.splitlines() if line.startswith("inheritune: ")]
    assert narrated[0] == "inheritune: reference: measuring its validation loss"
    assert narrated[1].startswith("inheritune: reference: validation loss ") and "rounds at 2, 4 layers" in narrated[1]
    assert "inheritune: round-1-2L: 2 layers, inherited from the reference's first blocks" in narrated
    assert "inheritune: round-2-4L: 4 layers, grown by restart from round 1" in narrated
    assert any(line.startswith("inheritune: round-2-4L: validation loss ") for line in narrated)


def test_run_from_a_yaml_recipe(reference_dir, tmp_path):
    out = tmp_path / "run"
    recipe = f"""
reference_model: {reference_dir}
output_dir: {out}
start_layers: 2
reference_loss: 100.0
corpus_max_bytes: {CORPUS_BYTES}
validation_fraction: 0.2
block_size: {BLOCK}
max_steps: 4
eval_strategy: steps
eval_steps: 2
save_strategy: "no"
use_cpu: true
report_to: none
plot: false
"""
    (tmp_path / "recipe.yaml").write_text(recipe)
    assert main(["run", str(tmp_path / "recipe.yaml")]) == 0
    rounds = json.loads((out / "rounds.json").read_text())
    assert [row["layers"] for row in rounds] == [2] and rounds[0]["matched"]
    # flags after the recipe override it: here, resume the finished run (nothing left to train)
    assert main(["run", str(tmp_path / "recipe.yaml"), "--resume"]) == 0
    assert json.loads((out / "rounds.json").read_text()) == rounds


def test_unknown_recipe_settings_are_named(tmp_path, capsys):
    (tmp_path / "recipe.yaml").write_text("output_dir: out\nstart_layer: 2\n")
    assert main(["run", str(tmp_path / "recipe.yaml")]) == 2
    assert "unknown setting start_layer in" in capsys.readouterr().err  # and the closest key, start_layers


def test_bad_input_exits_with_a_clear_error_before_training(reference_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *common_flags(reference_dir, out), "--target_loss", "low"]) == 2
    assert "target loss must be a number" in capsys.readouterr().err
    assert main(["run", *common_flags(reference_dir, out), "--start_layers", "2", "--max_layers", "6"]) == 2
    assert "cannot grow beyond the reference" in capsys.readouterr().err
    assert not (out / "rounds.json").exists()


def test_run_chooses_the_defaults_a_user_would(tmp_path):
    from inheritune_hf.cli import run as run_command

    def settings(*argv):
        _, _, training_args = run_command.parse(list(argv))
        return run_command._defaults_a_user_would_choose(list(argv), training_args)

    with pytest.raises(TrainingError, match="--output_dir DIR"):
        settings("--reference_model", "ref")
    chosen = settings("--output_dir", str(tmp_path), "--eval_steps", "5")
    assert chosen.eval_strategy == "steps" and chosen.eval_steps == 5
    assert chosen.save_total_limit == run_command.SAVE_TOTAL_LIMIT
    kept = settings("--output_dir", str(tmp_path), "--save_total_limit", "5", "--eval_strategy", "epoch")
    assert kept.save_total_limit == 5 and kept.eval_strategy == "epoch"
