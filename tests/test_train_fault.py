"""Fault tolerance: a run killed with SIGKILL after a checkpoint resumes to the same weights, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _train_script import run_rounds, run_train
from _train_setup import trained_reference
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("_train_script.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "0"}


def run_script(*args: str) -> None:
    subprocess.run([sys.executable, str(SCRIPT), *args], check=True, env=ENV, capture_output=True, timeout=300)


def kill_after_checkpoint(*args: str) -> int:
    """Start the script, wait for its "CHECKPOINT-SAVED" line, SIGKILL it; return the step it saved."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        for line in proc.stdout:
            if line.startswith("CHECKPOINT-SAVED"):
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
                assert proc.returncode == -signal.SIGKILL
                return int(line.split()[1])
        raise AssertionError(f"the run ended (code {proc.wait()}) before saving the checkpoint")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert wa[name].equal(wb[name]), f"{name} differs after resume"


@pytest.mark.slow  # Trainer's own resume; the round-level test below covers it through run_inheritune too
def test_killed_training_resumes_to_identical_weights(tmp_path):
    run_train(tmp_path / "whole")  # uninterrupted, in this process
    assert kill_after_checkpoint("train", str(tmp_path / "killed"), "--block-at-step", "8") == 8
    assert not (tmp_path / "killed" / "final").exists()
    assert (tmp_path / "killed" / "trainer" / "checkpoint-8").is_dir()
    run_script("train", str(tmp_path / "killed"), "--resume")

    assert_same_weights(tmp_path / "whole" / "final", tmp_path / "killed" / "final")
    whole = json.loads((tmp_path / "whole" / "result.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "result.json").read_text())
    assert resumed == whole  # the eval curve, restored from the checkpoint's trainer state, is complete


def test_killed_inheritune_run_resumes_at_its_round_and_step(tmp_path):
    reference = tmp_path / "reference"
    trained_reference().save_pretrained(reference)  # read by all three runs (saves training it in each process)
    run_rounds(tmp_path / "whole", reference=reference)  # uninterrupted, in this process
    # killed in round 2 (4 blocks) right after its step-4 checkpoint: round 1 is done and recorded
    killed = kill_after_checkpoint(
        "rounds", str(tmp_path / "killed"), "--block-at-step", "4", "--reference", str(reference)
    )
    assert killed == 4
    rounds = json.loads((tmp_path / "killed" / "rounds.json").read_text())
    assert [r["layers"] for r in rounds] == [2]
    round_1 = tmp_path / "killed" / "round-1-2L" / "model" / "model.safetensors"
    written = round_1.stat().st_mtime_ns

    run_script("rounds", str(tmp_path / "killed"), "--resume", "--reference", str(reference))

    assert round_1.stat().st_mtime_ns == written  # round 1 was read back, not trained again
    for kind in ("round-1-2L", "round-2-4L"):
        assert_same_weights(tmp_path / "whole" / kind / "model", tmp_path / "killed" / kind / "model")
    whole = json.loads((tmp_path / "whole" / "rounds.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "rounds.json").read_text())
    assert resumed == whole
    for row in whole:  # the resumed round kept its step-0 point (the grown model before training) from the checkpoint
        curve = json.loads((tmp_path / "killed" / row["eval_curve"]).read_text())
        assert curve == json.loads((tmp_path / "whole" / row["eval_curve"]).read_text()) and curve[0]["step"] == 0
