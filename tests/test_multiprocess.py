"""The recipes under `accelerate launch`: the demo from scratch on 2 gloo processes gives the one-process run's
losses; a GPT-2 recipe runs under the DeepSpeed ZeRO-2 config with one CPU process.

The run trains the reference, diagnoses it, runs Algorithm 1 with the baseline, evaluates and writes the model
folder. Both processes train; only the main one writes. The global batch is kept (2 processes x 4 blocks = one
process x 8 blocks), so only the reduction order and the reference's DDP training differ between the runs.
Measured on 2 CPU cores: one process 18 s, two processes 34 s; round-1 val loss 5.8812 vs 5.8975, baseline
6.17394 vs 6.17394, reference 6.1229 vs 6.1308.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_train_ddp import ENV, accelerate_command
from transformers import AutoModelForCausalLM

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
RECIPE = RECIPES / "tiny.py"
#: Val losses after 40 steps of a reference trained under DDP and of rounds inherited from it.
TOLERANCE = 2e-2


def run(out: Path, processes: int) -> subprocess.CompletedProcess:
    batch = ["--per_device_train_batch_size", str(8 // processes), "--per_device_eval_batch_size", "16"]
    launcher = [sys.executable]
    if processes > 1:
        launcher = [
            *accelerate_command(), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no",
        ]  # fmt: skip
    command = [*launcher, str(RECIPE), "--budget", "small", "--output_dir", str(out), *batch]
    launched = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=900)
    assert launched.returncode == 0, launched.stderr[-3000:]
    return launched


@pytest.mark.slow
def test_demo_recipe_from_scratch_on_two_processes_matches_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run(one, 1)
    launched = run(two, 2)

    assert launched.stdout.count("[1/5 reference]") == 1 and launched.stdout.count("[5/5 model]") == 1
    reference_one = json.loads((one / "reference" / "reference.json").read_text())
    reference_two = json.loads((two / "reference" / "reference.json").read_text())
    assert reference_two["tokens"] == reference_one["tokens"] == 40 * 8 * 64  # both processes trained
    assert reference_two["final_loss"] == pytest.approx(reference_one["final_loss"], abs=TOLERANCE)
    # saved once, through Trainer.save_model renamed into place: no second copy, no temporary folder left
    assert sorted(p.name for p in (two / "reference").iterdir()) == ["model", "reference.json"]

    rounds_one = json.loads((one / "inheritune" / "rounds.json").read_text())
    rounds_two = json.loads((two / "inheritune" / "rounds.json").read_text())
    assert [(r["kind"], r["layers"], r["tokens"]) for r in rounds_two] == [
        (r["kind"], r["layers"], r["tokens"]) for r in rounds_one
    ]
    for a, b in zip(rounds_one, rounds_two, strict=True):
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=TOLERANCE)
        assert b["reference_val_loss"] == pytest.approx(a["reference_val_loss"], abs=TOLERANCE)

    final = AutoModelForCausalLM.from_pretrained(two / "model")  # plain transformers, no plugin code
    reference = AutoModelForCausalLM.from_pretrained(two / "reference" / "model")
    assert (
        final.config.num_hidden_layers == [r for r in rounds_two if r["kind"] == "inheritune"][-1]["layers"]
        and reference.config.num_hidden_layers == 4
    )
    assert "Inheritune" in (two / "report.md").read_text()


def test_a_gpt2_recipe_runs_under_the_deepspeed_zero2_config(tmp_path):
    # The shipped config with one process: DeepSpeed runs ZeRO-2 on the CPU (FSDP cannot: accelerate turns it off
    # under use_cpu). The config asks for bf16, which TrainingArguments must match.
    out = tmp_path / "zero2"
    command = [
        *accelerate_command(), "launch", "--config_file", str(RECIPES / "accelerate_configs" / "deepspeed_zero2.yaml"),
        "--num_processes", "1", str(RECIPES / "gpt2_medium.py"),
        "--smoke", "--use_cpu", "true", "--bf16", "true", "--output_dir", str(out),
    ]  # fmt: skip
    launched = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=900)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("[5/5 model]") == 1

    # DeepSpeed's engine trained it: Trainer saved the engine's bf16 weights (under plain bf16 autocast they stay
    # fp32), and the folder loads with plain transformers
    reference_folder = out / "reference" / "model"
    assert json.loads((reference_folder / "config.json").read_text())["dtype"] == "bfloat16"
    assert AutoModelForCausalLM.from_pretrained(out / "model").num_parameters() > 0
    # The rounds measure the reference again with a Trainer that has not trained, which ZeRO-2 alone would refuse;
    # outside the engine, under the same bf16, the loss is the one the engine measured at the reference's last step
    reference = json.loads((out / "reference" / "reference.json").read_text())
    run = json.loads((out / "inheritune" / "run.json").read_text())
    assert run["reference_loss"] == pytest.approx(reference["final_loss"], abs=1e-3)
