"""The GPU check (`make gpu-check`): what a CPU laptop cannot show, measured on one CUDA GPU in under 8 minutes.

    python scripts/gpu_check.py [--rows train,loop,...] [--steps 30] [--batch 8] [--log gpu_check.log]
    python scripts/gpu_check.py --device cpu --tiny      # every row's code on tiny shapes, in seconds (a test)

One table, one row per check; each row runs on its own, within its own time limit, so a failure is reported in
its row (the exception's type and message; its traceback in the log) and the other rows still run:

- `train`, `loop`, `train-compile`, `loop-compile`: tokens/s and MFU of `inheritune_hf.train` on a
  GPT-2-medium-shaped model (24 layers, 1024 wide, 16 heads, vocabulary 50304, 1024-token blocks) in bf16 autocast
  + TF32 + fused AdamW + sdpa, against a plain torch loop with the same settings (`benchmarks/bench_gpu_train.py`,
  goal: >= 0.95x the loop and >= 45% MFU, issue 22), eagerly and under `torch.compile`;
- `smoke-bf16`, `smoke-fsdp`, `smoke-zero2`: `recipes/gpt2_medium.py --smoke` in bf16 on the GPU, and under
  `recipes/accelerate_configs/fsdp.yaml` and `deepspeed_zero2.yaml` with one process, its model folder loaded back
  with `from_pretrained` (on CPU the FSDP row is skipped: accelerate turns FSDP off under `use_cpu`; DeepSpeed runs
  there; without deepspeed installed its row is skipped);
- `attention`: `analyze_attention` over the paper's 100 windows x 100 tokens against a plain sdpa forward of the
  model's body over the same windows (goal <= 2x on the GPU, issue 21), its attention setting restored afterwards;
- `distill`: a distilled step (16 blocks from a 24-block teacher, vocabulary 50304, micro-batch 8 x 1024, bf16)
  against a plain one, peak memory and time (goals <= 1.3x and <= 1.6x);
- `collapse`: what `AttentionCollapseCallback` (100 windows x 100 tokens, every 100 steps) adds to training
  time (goal <= 5%).

The compiled pair runs last: cold compiles are the longest rows, so a run its caller cuts short keeps the others.

MFU = 6 x parameters x tokens / time / peak, the peak being the GPU's dense bf16 FLOP/s looked up from its name
(H100 / H200 989 TFLOP/s, A100 312, ...): an assumption, printed with the table. Without CUDA (and without
`--device cpu`) it exits at once with status 0 and says so. With `--device cpu --tiny` the figures only show that
the code runs: the goals are for the GPU shapes, and their column says so.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import bench_gpu_train as bench  # noqa: E402  (the throughput code both share)

peak_flops = bench.peak_flops
GPT2_MEDIUM = bench.SHAPES["medium"]
#: The launchers' own exceptions, which wrap the real one printed before them in the same stderr.
LAUNCHER_ERRORS = ("CalledProcessError", "ChildFailedError", "SystemExit")


class RowTimeout(Exception):
    """A row ran past its time limit (raised by SIGALRM inside the row)."""


class Skipped(Exception):
    """A row that cannot run here, with the reason (not a failure)."""


@dataclass
class Context:
    """What every row reads: the device, the shapes (full or tiny) and the flags."""

    device: str
    tiny: bool
    shape: bench.Shape
    batch: int
    smoke_timeout: int
    log: Path

    def sync(self) -> None:
        bench.synchronize(self.device)


@dataclass
class Outcome:
    """A row's result: its figure, its goal, whether the goal was met (None: not judged here), or why it failed."""

    figure: str = ""
    goal: str = ""
    met: bool | None = None
    status: str = "ok"
    data: dict[str, Any] = field(default_factory=dict)


def judged(ctx: Context, met: bool) -> bool | None:
    """Goals hold for the GPU shapes: on tiny shapes they are not judged."""
    return None if ctx.tiny else met


# --------------------------------------------------------------------------------------------------------------
# Training throughput against a plain loop
# --------------------------------------------------------------------------------------------------------------


def throughput(ctx: Context, way: str, compile_model: bool) -> Outcome:
    """Tokens/s of Trainer or the plain loop (`bench_gpu_train`), with its MFU where the peak is known."""
    settings = bench.Settings(ctx.batch, compile=compile_model, device=ctx.device)
    measure = bench.trainer_throughput if way == "train" else bench.loop_throughput
    result = measure(ctx.shape, settings)
    _, peak = bench.device_and_peak(ctx.device, None)
    share = bench.mfu(result, peak)
    figure = f"{result['tokens_per_s']:,.0f} tokens/s, MFU {'?' if share is None else f'{share:.1%}'}"
    if compile_model:
        figure += f", warm-up {result['warmup_s']:.0f} s"
    goal = ">= 45% MFU, >= 0.95x the loop" if way == "train" else "the floor Trainer is compared to"
    met = judged(ctx, share is not None and share >= 0.45) if way == "train" else None
    return Outcome(figure, goal, met, data=result)


# --------------------------------------------------------------------------------------------------------------
# The recipe's smoke, in bf16 and under FSDP
# --------------------------------------------------------------------------------------------------------------


def real_exception(stderr: str) -> str:
    """The exception that failed a child process, read from its stderr: the last line of the first traceback whose
    exception is not a launcher's wrapper (accelerate's CalledProcessError, torchrun's ChildFailedError, whose
    '=====' box is all a last-line reader sees), else the last non-blank line."""
    lines = stderr.splitlines()
    found: list[str] = []
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            for follow in lines[index + 1 :]:
                if follow and not follow.startswith((" ", "\t")) and not follow.startswith("Traceback"):
                    found.append(follow.strip())
                    break
    real = [line for line in found if not any(line.split(":")[0].endswith(name) for name in LAUNCHER_ERRORS)]
    if real or found:
        return (real or found)[0]
    rest = [line.strip() for line in lines if line.strip() and set(line.strip()) - set("=-")]
    return rest[-1] if rest else "no output on stderr"


def recipe_smoke(ctx: Context, accelerate_config: str | None = None) -> Outcome:
    """`recipes/gpt2_medium.py --smoke` (bf16 on the GPU), or under one of `recipes/accelerate_configs/` with one
    process (`fsdp`, `deepspeed_zero2`); the model folder it writes must load with `from_pretrained`."""
    if accelerate_config == "fsdp" and ctx.device != "cuda":
        raise Skipped("FSDP needs CUDA: accelerate turns FSDP off under use_cpu, so on CPU there is nothing to check")
    if accelerate_config and accelerate_config.startswith("deepspeed") and find_spec("deepspeed") is None:
        raise Skipped("DeepSpeed is not installed here: pip install deepspeed (it runs ZeRO-2 on one GPU or CPU)")
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as out:
        cuda = ctx.device == "cuda"
        flags = ["--smoke", "--use_cpu", str(not cuda).lower(), "--bf16", "true", "--output_dir", out]
        script = str(ROOT / "recipes" / "gpt2_medium.py")
        if accelerate_config:
            config = str(ROOT / "recipes" / "accelerate_configs" / f"{accelerate_config}.yaml")
            launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config]
            command = [*launcher, "--num_processes", "1", script, *flags]
        else:
            command = [sys.executable, script, *flags]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=ctx.smoke_timeout, cwd=ROOT)
        except subprocess.TimeoutExpired as err:
            raise RowTimeout(f"the recipe ran past --smoke_timeout {ctx.smoke_timeout} s") from err
        with ctx.log.open("a") as log:
            log.write(f"\n### {' '.join(command)}\n(exit {done.returncode})\n{done.stderr[-20000:]}\n")
        if done.returncode != 0:
            raise RuntimeError(f"exit {done.returncode}: {real_exception(done.stderr)}")
        folder = Path(out) / "model"
        if not (folder / "model.safetensors").is_file():
            raise RuntimeError(f"finished without {folder.name}/model.safetensors")
        loaded = AutoModelForCausalLM.from_pretrained(folder)
        params = sum(p.numel() for p in loaded.parameters())
        seconds = time.perf_counter() - started
    return Outcome(f"ran in {seconds:.0f} s; model folder loads ({params:,} parameters)", "runs, saves, loads")


# --------------------------------------------------------------------------------------------------------------
# Diagnosis against a forward pass
# --------------------------------------------------------------------------------------------------------------


def attention_ratio(ctx: Context) -> Outcome:
    """`analyze_attention` over the paper's windows against a plain sdpa forward of the model's body (no LM head,
    no statistics) over the same windows in the same batches: the median of 3 back-to-back pairs after a warm-up."""
    import torch

    from inheritune_hf import analyze_attention

    samples, seq_len, batch_size = (8, 16, 4) if ctx.tiny else (100, 100, 8)
    model = bench.build_model(ctx.shape, ctx.device).eval()
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, ctx.shape.vocab_size, (samples, seq_len), generator=generator)
    device_ids = ids.to(ctx.device)

    def body() -> float:
        ctx.sync()
        start = time.perf_counter()
        with torch.inference_mode():
            for batch in device_ids.split(batch_size):
                model.base_model(input_ids=batch, use_cache=False)
        ctx.sync()
        return time.perf_counter() - start

    def report() -> float:
        ctx.sync()
        start = time.perf_counter()
        analyze_attention(
            model, input_ids=ids, num_samples=samples, seq_len=seq_len, batch_size=batch_size, progress=False
        )
        ctx.sync()
        return time.perf_counter() - start

    body(), report()  # warm-up: kernel selection, allocator, the statistics' first calls
    pairs = [(report(), body()) for _ in range(3)]
    setting = model.config._attn_implementation
    if setting != "sdpa":
        raise RuntimeError(f"analyze_attention left the model on {setting!r}, not sdpa")
    ratio = statistics.median(r / b for r, b in pairs)
    seconds = statistics.median(r for r, _ in pairs)
    limit = 2.0 if ctx.device == "cuda" else 1.2
    figure = f"{ratio:.2f}x the body's forward ({seconds:.2f} s for {samples} x {seq_len}); sdpa restored"
    return Outcome(figure, f"<= {limit}x", judged(ctx, ratio <= limit), data={"ratio": ratio})


# --------------------------------------------------------------------------------------------------------------
# Distillation and collapse tracking, timed through Trainer
# --------------------------------------------------------------------------------------------------------------


@contextmanager
def peak_memory(ctx: Context) -> Iterator[dict[str, float | None]]:
    """The device's peak allocated bytes over the block (None on CPU, where torch keeps no such counter)."""
    import torch

    found: dict[str, float | None] = {"peak": None}
    if ctx.device == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    yield found
    if ctx.device == "cuda":
        found["peak"] = float(torch.cuda.max_memory_allocated())


def timed_training(ctx: Context, model, callbacks=(), **distillation) -> tuple[float, float | None]:
    """Seconds per optimizer step after the warm-up, and the peak device memory, of `inheritune_hf.train`."""
    from transformers import TrainerCallback

    from inheritune_hf import train

    shape, sync = ctx.shape, ctx.sync

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.marks: dict[int, float] = {}

        def on_step_begin(self, args, state, control, **kwargs):
            sync()
            self.marks.setdefault(-state.global_step - 1, time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self.marks[state.global_step] = time.perf_counter()

    clock = Clock()
    _, train_set = bench.blocks(shape, ctx.batch * shape.steps)
    _, eval_set = bench.blocks(shape, ctx.batch)
    args = bench.training_arguments(bench.Settings(ctx.batch, device=ctx.device), shape, "unused")
    with tempfile.TemporaryDirectory() as out, peak_memory(ctx) as memory:
        args.output_dir = out
        train(model, train_set, eval_set, args, callbacks=[clock, *callbacks], **distillation)
    # the steps after the warm-up, each from its begin to its end: what the callbacks do between steps is left out
    seconds = [clock.marks[step] - clock.marks[-step] for step in range(shape.warmup + 1, shape.steps + 1)]
    return statistics.median(seconds), memory["peak"]


def distill_step(ctx: Context) -> Outcome:
    """A distilled step (student 2/3 of the teacher's blocks, alpha 0.5, T 2) against a plain step of the student."""
    from inheritune_hf.settings import DistillationConfig

    student_layers = max(1, ctx.shape.n_layer * 2 // 3)
    plain_s, plain_peak = timed_training(ctx, bench.build_model(ctx.shape, ctx.device, student_layers))
    teacher = bench.build_model(ctx.shape, ctx.device)
    student = bench.build_model(ctx.shape, ctx.device, student_layers)
    distilled_s, distilled_peak = timed_training(
        ctx, student, teacher=teacher, distillation=DistillationConfig(weight=0.5, temperature=2.0)
    )
    time_ratio = distilled_s / plain_s
    figure = f"time {time_ratio:.2f}x ({distilled_s * 1e3:.0f} vs {plain_s * 1e3:.0f} ms/step)"
    if plain_peak and distilled_peak:
        memory_ratio = distilled_peak / plain_peak
        figure += f", peak memory {memory_ratio:.2f}x ({distilled_peak / 2**30:.1f} vs {plain_peak / 2**30:.1f} GiB)"
    else:
        memory_ratio = None
        figure += ", peak memory not measured on CPU"
    met = time_ratio <= 1.6 and (memory_ratio is None or memory_ratio <= 1.3)
    data = {"time_ratio": time_ratio, "memory_ratio": memory_ratio}
    return Outcome(figure, "memory <= 1.3x, time <= 1.6x", judged(ctx, met), data=data)


def collapse_overhead(ctx: Context) -> Outcome:
    """What `AttentionCollapseCallback` adds at the recipe's cadence: one probe's seconds over 100 steps' seconds.

    Training runs `steps` steps with the callback probing at step 0 and at the last step; the step time is timed
    without the probes (from each step's begin to its end), so overhead = probe / (every x step)."""
    from inheritune_hf import AttentionCollapseCallback

    samples, seq_len, every = (4, 16, 100) if ctx.tiny else (100, 100, 100)
    import torch

    ids = torch.randint(0, ctx.shape.vocab_size, (samples, seq_len), generator=torch.Generator().manual_seed(2))

    class Timed(AttentionCollapseCallback):
        """The callback, with the seconds of each probe that measured (not those a step measured already)."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.seconds: list[float] = []

        def _probe(self, args, state, model):
            ctx.sync()
            start, before = time.perf_counter(), len(self.history)
            super()._probe(args, state, model)
            ctx.sync()
            if len(self.history) > before:
                self.seconds.append(time.perf_counter() - start)

    callback = Timed(ids, every_n_steps=ctx.shape.steps)
    step_s, _ = timed_training(ctx, bench.build_model(ctx.shape, ctx.device), callbacks=[callback])
    if len(callback.seconds) < 2:
        raise RuntimeError(f"the callback probed {len(callback.seconds)} times, expected 2 (step 0 and the last)")
    probe_s = statistics.median(callback.seconds[1:])  # the first probe pays the first-call costs
    overhead = probe_s / (every * step_s)
    figure = f"{overhead:.1%} (a probe {probe_s:.2f} s per {every} steps of {step_s * 1e3:.0f} ms)"
    return Outcome(figure, "<= 5% of training time", judged(ctx, overhead <= 0.05), data={"overhead": overhead})


# --------------------------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """A check: its title in the table, its code, and its time limit on the GPU shapes (seconds)."""

    title: str
    run: Callable[[Context], Outcome]
    limit: int
    runs_a_child: bool = False  # a recipe run in a subprocess: its own limit is --smoke_timeout, the row's above it


ROWS: dict[str, Row] = {
    "train": Row("inheritune_hf.train", lambda ctx: throughput(ctx, "train", False), 150),
    "loop": Row("plain torch loop", lambda ctx: throughput(ctx, "loop", False), 120),
    "smoke-bf16": Row("gpt2_medium.py --smoke (bf16)", lambda ctx: recipe_smoke(ctx), 240, True),
    "smoke-fsdp": Row("gpt2_medium.py --smoke (FSDP, 1 process)", lambda ctx: recipe_smoke(ctx, "fsdp"), 240, True),
    "attention": Row("analyze_attention vs an sdpa forward", attention_ratio, 150),
    "distill": Row("distilled step vs a plain step", distill_step, 180),
    "collapse": Row("AttentionCollapseCallback overhead", collapse_overhead, 180),
    # after issue 21's rows: a run cut short by its caller's limit loses this optional one before them
    "smoke-zero2": Row(
        "gpt2_medium.py --smoke (DeepSpeed ZeRO-2, 1 process)",
        lambda ctx: recipe_smoke(ctx, "deepspeed_zero2"),
        240,
        True,
    ),  # fmt: skip
    # last: their cold compiles are the longest rows, so a run cut short by its caller's limit loses only these
    # (benchmarks/bench_gpu_train.py measures compiled Trainer and loop again, at the recipes' micro-batch)
    "train-compile": Row("inheritune_hf.train + torch.compile", lambda ctx: throughput(ctx, "train", True), 300),
    "loop-compile": Row("plain torch loop + torch.compile", lambda ctx: throughput(ctx, "loop", True), 300),
}
#: On tiny shapes every row is seconds; the limit still catches a hang.
TINY_LIMIT = 120


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise `RowTimeout` inside the row after `seconds` (SIGALRM; the main thread only, where the check runs)."""

    def expire(signum, frame):
        raise RowTimeout(f"over its time limit of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_row(key: str, ctx: Context) -> Outcome:
    """One row, its failure caught and reported in its row: the exception's type and message in the table, its
    traceback in the log (the table is the point, not the first error)."""
    row = ROWS[key]
    started = time.perf_counter()
    try:
        limit = TINY_LIMIT if ctx.tiny else row.limit
        with time_limit(max(limit, ctx.smoke_timeout + 30) if row.runs_a_child else limit):
            outcome = row.run(ctx)
    except Skipped as reason:
        outcome = Outcome(status=f"skipped: {reason}")
    except Exception as err:  # noqa: BLE001 - every failure is a row of the table
        message = " ".join(str(err).split())
        outcome = Outcome(status=f"FAILED: {type(err).__name__}: {message[:300]}")
        with ctx.log.open("a") as log:
            log.write(f"\n### {key}: {type(err).__name__}\n{traceback.format_exc()[-8000:]}\n")
        del err
    finally:
        gc.collect()
        if ctx.device == "cuda":
            import torch

            torch.cuda.empty_cache()
    outcome.data["seconds"] = time.perf_counter() - started
    return outcome


def with_ratios(results: dict[str, Outcome]) -> None:
    """Trainer's tokens/s over the loop's, where both ran (goal >= 0.95x), added to the Trainer rows' figures."""
    for train, loop in (("train", "loop"), ("train-compile", "loop-compile")):
        mine, theirs = results.get(train), results.get(loop)
        if mine and theirs and "tokens_per_s" in mine.data and "tokens_per_s" in theirs.data:
            ratio = mine.data["tokens_per_s"] / theirs.data["tokens_per_s"]
            mine.data["vs_loop"] = ratio
            mine.figure += f", {ratio:.2f}x the loop"
            if mine.met is not None:
                mine.met = mine.met and ratio >= 0.95


def parse_rows(text: str) -> list[str]:
    """`--rows` as keys of `ROWS`, in the table's order; 'all' is every row."""
    if text == "all":
        return list(ROWS)
    keys = [key.strip() for key in text.split(",") if key.strip()]
    unknown = [key for key in keys if key not in ROWS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"unknown row(s) {unknown or text!r}; choose from: all, {', '.join(ROWS)}")
    return [key for key in ROWS if key in keys]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=parse_rows, default=list(ROWS), help=f"comma-separated: {', '.join(ROWS)}")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes: every row's code in seconds, on CPU too")
    parser.add_argument("--steps", type=int, default=None, help="training steps per row (default 30; tiny 3)")
    parser.add_argument("--batch", type=int, default=None, help="blocks per step (default 8; tiny 2)")
    parser.add_argument("--smoke_timeout", type=int, default=180, help="seconds allowed to each recipe smoke run")
    parser.add_argument("--log", type=Path, default=Path("gpu_check.log"), help="tracebacks and children's stderr")
    args = parser.parse_args(argv)
    shape = bench.TINY if args.tiny else GPT2_MEDIUM
    steps = shape.steps if args.steps is None else args.steps
    batch = (2 if args.tiny else 8) if args.batch is None else args.batch
    if steps <= shape.warmup + 1:
        parser.error(f"--steps must be >= {shape.warmup + 2} ({shape.warmup} untimed warm-up steps), got {steps}")
    if batch < 1:
        parser.error(f"--batch must be >= 1 block per step, got {batch}")
    if args.smoke_timeout < 1:
        parser.error(f"--smoke_timeout must be >= 1 second, got {args.smoke_timeout}")
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if args.device == "cuda" and not cuda:
        print("gpu-check: no CUDA GPU on this machine; nothing to measure (it runs on one CUDA GPU in < 8 min).")
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    args.log.parent.mkdir(parents=True, exist_ok=True)
    args.log.write_text(f"# gpu_check {time.strftime('%Y-%m-%d %H:%M:%S')}: rows {', '.join(args.rows)}\n")
    ctx = Context(args.device, args.tiny, replace(shape, steps=steps), batch, args.smoke_timeout, args.log)
    name, peak = bench.device_and_peak(args.device, None)
    import transformers

    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    print(f"## GPU check: {name}{' (tiny shapes)' if args.tiny else ''}, {time.strftime('%Y-%m-%d')}, {versions}")
    started = time.perf_counter()
    results: dict[str, Outcome] = {}
    for key in args.rows:
        outcome = results[key] = run_row(key, ctx)
        print(f"{key}: {outcome.status}; {outcome.figure or '-'} (goal: {outcome.goal or '-'})", flush=True)
    with_ratios(results)

    print(f"\n{len(results)} rows in {time.perf_counter() - started:.0f} s; tracebacks in {args.log}")
    print(f"MFU = 6 x params x tokens/s / peak; peak assumed {peak / 1e12:.0f} TFLOP/s dense bf16" if peak else
          "MFU left out: no bf16 peak known for this device (PEAK_BF16 in benchmarks/bench_gpu_train.py)")  # fmt: skip
    print("\n| check | measured | goal | goal met | seconds | result |\n|---|---|---|---|---|---|")
    for key, outcome in results.items():
        met = {True: "yes", False: "NO", None: "n/a (tiny)" if args.tiny and outcome.goal else ""}[outcome.met]
        print(
            f"| {ROWS[key].title} | {outcome.figure} | {outcome.goal} | {met} | {outcome.data['seconds']:.0f} | "
            f"{outcome.status} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
