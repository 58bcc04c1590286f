"""`make gpu-check` is ready for a GPU and harmless without one: it exits at once, status 0, saying why."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the script runs the check itself")
def test_gpu_check_exits_at_once_without_a_gpu():
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == [
        "gpu-check: no CUDA GPU on this machine; nothing to measure (it runs on one CUDA GPU in < 8 min)."
    ]
    assert time.perf_counter() - started < 60  # torch's import only: no model is built


def test_gpu_check_knows_the_peaks_it_computes_mfu_against():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.peak_flops("NVIDIA H200") == module.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert module.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert module.peak_flops("NVIDIA GeForce GTX 1080") is None  # unknown: MFU is left out, not guessed


def test_make_gpu_check_runs_the_script():
    makefile = (SCRIPT.parent.parent / "Makefile").read_text()
    assert "gpu-check: install\n\t$(PY) scripts/gpu_check.py\n" in makefile
