"""Multi-process: `accelerate launch` runs gloo DDP on CPU, and the losses agree with one process.

`accelerate launch --cpu --num_processes 2` silently runs ONE process, so the test uses `--multi_gpu` with
`use_cpu=True` in TrainingArguments, and checks that the run really had a world of 2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _train_script import run_rounds
from _train_setup import trained_reference

SCRIPT = Path(__file__).with_name("_train_script.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def accelerate_command() -> list[str]:
    found = Path(sys.executable).with_name("accelerate")
    return [str(found)] if found.exists() else [shutil.which("accelerate") or "accelerate"]


def test_two_process_ddp_inheritune_run_matches_one_process(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    trained_reference().save_pretrained(tmp_path / "reference")  # the same reference for both runs
    run_rounds(single, batch=8, reference=tmp_path / "reference")  # one process, in this one
    launched = subprocess.run(
        [
            *accelerate_command(), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no",
            str(SCRIPT), "rounds", str(ddp), "--batch", "4", "--reference", str(tmp_path / "reference"),
        ],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]

    # 2 processes x 4 blocks = the same global batch of 8, the same data order; only the reduction order and the
    # one padded sample of the distributed eval sampler (an odd number of validation blocks) differ
    state = json.loads(next((ddp / "round-2-4L").glob("checkpoint-*/trainer_state.json")).read_text())
    assert state["train_batch_size"] == 4
    one = json.loads((single / "rounds.json").read_text())
    two = json.loads((ddp / "rounds.json").read_text())
    assert [row["layers"] for row in two] == [row["layers"] for row in one] == [2, 4]
    for a, b in zip(one, two, strict=True):
        assert a["tokens"] == b["tokens"] == 12 * 8 * 32  # tokens count both processes
        assert a["reference_val_loss"] == pytest.approx(b["reference_val_loss"], abs=1e-2)
        curve_one = json.loads((single / a["eval_curve"]).read_text())
        curve_two = json.loads((ddp / b["eval_curve"]).read_text())
        assert [p["step"] for p in curve_one] == [p["step"] for p in curve_two]
        for p, q in zip(curve_one, curve_two, strict=True):
            assert p["eval_loss"] == pytest.approx(q["eval_loss"], abs=2e-2)


def test_a_recipe_runs_under_accelerate_launch_with_two_processes(tmp_path):
    # The GPU recipes' multi-process path (reference stage, main-process-only diagnosis, evaluation and model
    # folder), on CPU: the smoke shapes, 2 gloo processes.
    out = tmp_path / "smoke"
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "gpt2_xl.py"
    launched = subprocess.run(
        [
            *accelerate_command(), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", str(recipe), "--smoke", "--output_dir", str(out),
        ],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("[1/5 reference]") == 1  # stage lines come from the main process only
    reference = json.loads((out / "reference" / "reference.json").read_text())
    assert reference["tokens"] == reference["steps"] * 2 * 4 * 64  # both processes trained: 2 x 4 blocks of 64
    assert (out / "report.md").is_file() and (out / "model" / "model.safetensors").is_file()
