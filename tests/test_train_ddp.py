"""Multi-process: `accelerate launch` runs gloo DDP on CPU, and the losses agree with one process.

`accelerate launch --cpu --num_processes 2` silently runs ONE process, so the test uses `--multi_gpu` with
`use_cpu=True` in TrainingArguments, and checks that the run really saw a world of 2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("_train_script.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def accelerate_command() -> list[str]:
    found = Path(sys.executable).with_name("accelerate")
    return [str(found)] if found.exists() else [shutil.which("accelerate") or "accelerate"]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    subprocess.run(
        [sys.executable, str(SCRIPT), "train", str(single), "--batch", "8"],
        check=True, env=ENV, capture_output=True, timeout=300,
    )  # fmt: skip
    launched = subprocess.run(
        [
            *accelerate_command(), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no",
            str(SCRIPT), "train", str(ddp), "--batch", "4",
        ],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]

    one = json.loads((single / "result.json").read_text())
    two = json.loads((ddp / "result.json").read_text())
    assert one["world_size"] == 1 and two["world_size"] == 2
    # the same global batch (2 x 4 = 8 blocks) and data order: only reduction order and the one padded eval
    # sample of the distributed eval sampler differ
    assert [p["step"] for p in two["eval_curve"]] == [p["step"] for p in one["eval_curve"]]
    assert [p["tokens"] for p in two["eval_curve"]] == [p["tokens"] for p in one["eval_curve"]]
    for a, b in zip(one["train_losses"], two["train_losses"], strict=True):
        assert a == pytest.approx(b, abs=2e-2)
    for a, b in zip(one["eval_curve"], two["eval_curve"], strict=True):
        assert a["eval_loss"] == pytest.approx(b["eval_loss"], abs=1e-2)
