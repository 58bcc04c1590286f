"""`make gpu-check` cannot rot: every row's code runs here on tiny shapes on CPU, and a failing row names its error.

On 2026-12-04 the check met its first GPU and four of seven rows failed, one on a datasets API change (a `Column`
where a tensor was read) that a CPU run of the same code would have caught the day it landed. The rows here run
in `--device cpu --tiny` mode: the same functions as on the GPU, on a 2-layer model of width 64.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = _load(SCRIPT, "gpu_check")
bench = gpu_check.bench  # benchmarks/bench_gpu_train.py, which the training rows share

#: The rows a CPU test runs in seconds; the compile rows (dynamo tracing) and the recipe's smoke are slow.
FAST_ROWS = ["train", "loop", "attention", "distill", "collapse", "smoke-fsdp"]
SLOW_ROWS = ["train-compile", "loop-compile", "smoke-bf16", "smoke-zero2"]


@pytest.fixture
def tiny(tmp_path):
    """The context `--device cpu --tiny` gives every row."""
    shape = gpu_check.bench.TINY
    return gpu_check.Context("cpu", True, shape, 2, 600, tmp_path / "gpu_check.log")


def test_every_row_is_covered_by_a_test():
    assert sorted(FAST_ROWS + SLOW_ROWS) == sorted(gpu_check.ROWS)


@pytest.mark.parametrize("key", [k for k in FAST_ROWS if k != "smoke-fsdp"])
def test_row_runs_on_tiny_shapes_on_cpu(key, tiny):
    outcome = gpu_check.run_row(key, tiny)
    assert outcome.status == "ok", outcome.status
    assert outcome.met is None  # tiny shapes: the goals are for the GPU and are not judged here
    figures = {k: v for k, v in outcome.data.items() if k not in ("seconds", "params")}
    assert figures, outcome
    for name, value in figures.items():
        assert value is None or (math.isfinite(value) and value > 0), (name, value)


def test_fsdp_row_is_skipped_on_cpu_with_its_reason(tiny):
    outcome = gpu_check.run_row("smoke-fsdp", tiny)
    assert outcome.status.startswith("skipped: FSDP needs CUDA: accelerate turns FSDP off under use_cpu")


def test_deepspeed_row_is_skipped_with_its_reason_where_deepspeed_is_missing(tiny, monkeypatch):
    monkeypatch.setattr(gpu_check, "find_spec", lambda name: None)
    outcome = gpu_check.run_row("smoke-zero2", tiny)
    assert outcome.status.startswith("skipped: DeepSpeed is not installed here: pip install deepspeed")


@pytest.mark.slow
@pytest.mark.parametrize("key", SLOW_ROWS)
def test_slow_row_runs_on_tiny_shapes_on_cpu(key, tiny):
    outcome = gpu_check.run_row(key, tiny)
    assert outcome.status == "ok", (outcome.status, tiny.log.read_text()[-3000:])


def test_a_broken_row_shows_its_real_exception_and_logs_its_traceback(tmp_path, capsys, monkeypatch):
    def broken(ctx):
        raise ValueError("the real error: 42 blocks\nsecond line")

    monkeypatch.setitem(gpu_check.ROWS, "attention", gpu_check.Row("analyze_attention", broken, 10))
    log = tmp_path / "check.log"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--rows", "attention", "--log", str(log)]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| analyze_attention |")]
    assert len(table) == 1 and table[0].endswith("| FAILED: ValueError: the real error: 42 blocks second line |")
    logged = log.read_text()
    assert "### attention: ValueError" in logged and 'raise ValueError("the real error' in logged


def test_a_row_past_its_limit_fails_in_its_row(tiny, monkeypatch):
    monkeypatch.setitem(gpu_check.ROWS, "loop", gpu_check.Row("loop", lambda ctx: time.sleep(5), 1))
    monkeypatch.setattr(gpu_check, "TINY_LIMIT", 1)
    started = time.perf_counter()
    outcome = gpu_check.run_row("loop", tiny)
    assert outcome.status == "FAILED: RowTimeout: over its time limit of 1 s"
    assert time.perf_counter() - started < 4


def test_the_real_exception_is_read_past_the_launchers_wrappers():
    stderr = "\n".join(
        [
            "Traceback (most recent call last):",
            '  File "recipes/gpt2_medium.py", line 9, in <module>',
            "inheritune_hf.errors.DataError: The validation split: fewer tokens than one block of 64",
            "Traceback (most recent call last):",
            '  File "torch/distributed/run.py", line 1, in main',
            "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ",
            "============================================================",
        ]
    )
    assert gpu_check.real_exception(stderr) == (
        "inheritune_hf.errors.DataError: The validation split: fewer tokens than one block of 64"
    )
    assert gpu_check.real_exception("warning: x\n=====\n") == "warning: x"


def test_rows_flag_picks_rows_in_table_order_and_refuses_unknown_ones():
    assert gpu_check.parse_rows("collapse,train") == ["train", "collapse"]
    assert gpu_check.parse_rows("all") == list(gpu_check.ROWS)
    with pytest.raises(Exception, match="unknown row.*choose from: all, train"):
        gpu_check.parse_rows("train,trian")


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
    assert gpu_check.peak_flops("NVIDIA H200") == gpu_check.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_check.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_check.peak_flops("NVIDIA GeForce GTX 1080") is None  # unknown: MFU is left out, not guessed


def test_make_gpu_check_uses_the_python_at_hand_and_never_installs():
    makefile = (ROOT / "Makefile").read_text()
    target = makefile.split("\ngpu-check:")[1].split("\n\n")[0]
    assert target.splitlines()[0].strip() == ""  # no prerequisite: `install` would put a CPU torch over CUDA's
    assert "$(GPU_PYTHON) scripts/gpu_check.py" in target and "pip" not in target
    # Run as a top-level make even inside `make test`: a parent make's MAKELEVEL/MAKEFLAGS would add
    # "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "gpu-check", "PYTHON=/opt/cuda-env/bin/python"],
        cwd=ROOT, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.stdout.split() == ["/opt/cuda-env/bin/python", "scripts/gpu_check.py"], done.stderr


def test_bench_gpu_train_prints_trainer_beside_the_loop_with_mfu(capsys):
    assert (
        bench.main(["--device", "cpu", "--tiny", "--compile", "off", "--micro_batch", "2", "--peak_tflops", "0.001"])
        == 0
    )
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| 2 |")]
    assert [cells[3].strip() for cells in rows] == ["loop", "Trainer"]
    params = sum(p.numel() for p in bench.build_model(bench.TINY, "cpu").parameters())
    for cells in rows:
        tokens_per_s = float(cells[4].replace(",", ""))
        assert tokens_per_s > 0
        # MFU = 6 N tokens/s / peak, in percent of the 1 GFLOP/s given (a peak a tiny CPU run is a fair share of),
        # printed to 0.1% from tokens/s printed to 1 token/s
        expected = 600 * params * tokens_per_s / 1e9
        assert float(cells[5].strip().rstrip("%")) == pytest.approx(expected, rel=0.01, abs=0.06)
    assert rows[0][6].strip() == "1.00x" and float(rows[1][6].strip().rstrip("x")) > 0


def test_step_clock_reads_gpu_events_once_at_the_end_in_seconds(monkeypatch):
    # The GPU branch with a stand-in for torch.cuda.Event (no CUDA here): marks are events, recorded without a
    # wait; only reading an interval waits, for its end event, and the events' milliseconds come back as seconds.
    log = []

    class Event:
        def __init__(self, enable_timing: bool) -> None:
            assert enable_timing
            self.at = None

        def record(self) -> None:
            self.at = len(log) * 0.25  # each mark 0.25 ms after the one before
            log.append("record")

        def synchronize(self) -> None:
            log.append("wait")

        def elapsed_time(self, end: Event) -> float:
            return end.at - self.at

    monkeypatch.setattr(torch.cuda, "Event", Event)
    clock = bench.StepClock("cuda")
    for step in range(4):
        clock.mark(step)
    assert log == ["record"] * 4  # no wait while the steps run
    assert clock.seconds(1, 3) == pytest.approx(0.5e-3) and log[-1] == "wait"


def test_bench_trains_with_the_gpt2_recipes_optimizer_and_logging_settings():
    import yaml

    recipe = yaml.safe_load((ROOT / "recipes" / "gpt2_medium.yaml").read_text())
    settings = bench.training_arguments(bench.Settings(2, device="cpu"), bench.TINY, "unused")
    for key in ("weight_decay", "adam_beta1", "adam_beta2", "max_grad_norm", "logging_nan_inf_filter"):
        assert getattr(settings, key) == recipe[key], key
    assert recipe["optim"] == "adamw_torch_fused" and recipe["bf16"] and recipe["tf32"]  # the bench's GPU settings


def test_bench_gpu_train_refuses_a_warmup_that_leaves_no_timed_step(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--device", "cpu", "--tiny", "--steps", "3", "--warmup", "3"])
    assert "--warmup must be in [1, --steps - 1]" in capsys.readouterr().err


@pytest.mark.slow
def test_profile_step_prints_the_top_ops_of_traced_steps(tmp_path, capsys):
    profile_step = _load(ROOT / "scripts" / "profile_step.py", "profile_step")
    trace = tmp_path / "trace.json"
    argv = ["--device", "cpu", "--tiny", "--wait", "1", "--active", "2", "--rows", "5", "--trace", str(trace)]
    assert profile_step.main(argv) == 0
    printed = capsys.readouterr().out
    assert "2 steps traced after 2, sorted by self_cpu_time_total" in printed and "aten::" in printed
    assert trace.stat().st_size > 0


@pytest.mark.slow
def test_the_gpu_session_rehearses_every_stage_on_cpu(tmp_path):
    # The one device call, its stages and flags as they stand, on tiny shapes: a flag a stage no longer takes or a
    # stage that breaks shows here, not after the GPU machine's start. What comes back from a device call is at most
    # 8 files, each named in letters, digits, '.', '_' and '-'.
    out, wheels = tmp_path / "out", tmp_path / "no_wheels"
    wheels.mkdir()
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "GPU_SESSION_WHEELS": str(wheels)}
    env["GPU_SESSION_FLAGS"] = "--device cpu --tiny"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_session.sh")], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = (out / "summary.txt").read_text()
    for stage in ("gpu_check", "profile_step", "bench_gpu_train", "bench_gpu_train_xl"):
        assert f"### {stage}: exit 0 after" in summary, summary
    files = sorted(path.name for path in out.iterdir())
    assert len(files) <= 8 and all(path.is_file() for path in out.iterdir()), files
    assert all(name.replace(".", "").replace("_", "").replace("-", "").isalnum() for name in files), files
    checked = (out / "gpu_check.txt").read_text()
    assert "| inheritune_hf.train |" in checked and "(DeepSpeed ZeRO-2, 1 process) |" in checked
    assert "+ torch.compile" not in checked  # its compiled pair is left to the benches
    for bench_log in ("bench_gpu_train.txt", "bench_gpu_train_xl.txt"):
        assert "| Trainer |" in (out / bench_log).read_text()


def test_gpu_session_script_parses_and_fits_one_device_call():
    script = ROOT / "scripts" / "gpu_session.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    limits = {
        line.split()[1]: int(line.split()[2])
        for line in script.read_text().splitlines()
        if line.startswith("  stage ")
    }
    limits.update(
        {
            line.split()[1]: int(line.split()[2])
            for line in script.read_text().splitlines()
            if line.startswith("stage ")
        }
    )
    assert set(limits) == {"install", "gpu_check", "profile_step", "bench_gpu_train", "bench_gpu_train_xl"}
    assert sum(limits.values()) <= 580  # one `run` call of at most 600 s, with the session's own start around it
