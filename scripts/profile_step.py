"""Where a training step's time goes: torch.profiler over a few `inheritune_hf.train` steps, the top ops printed.

Issue 22 asks to find what brings Trainer to >= 45% MFU from a profile rather than by guessing. This profiles
`--active` steps of `inheritune_hf.train` on the shape and settings of `benchmarks/bench_gpu_train.py` (after
`--wait` untimed steps that take compilation and allocator growth out of the trace), prints the ops by their own
device time (CPU time on CPU), and writes a Chrome trace (open in https://ui.perfetto.dev) to `--trace`.

    python scripts/profile_step.py --micro_batch 16 --compile --trace outputs/step_trace.json
    python scripts/profile_step.py --device cpu --tiny           # the same code on tiny shapes
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import bench_gpu_train as bench  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(bench.SHAPES), default="medium")
    parser.add_argument("--micro_batch", type=int, default=8)
    parser.add_argument("--compile", action="store_true", help="torch.compile (its warm-up falls in --wait)")
    parser.add_argument(
        "--wait",
        type=int,
        default=5,
        help="untimed steps before the trace (warm-up, compilation); one more warms the profiler",
    )
    parser.add_argument("--active", type=int, default=3, help="steps traced")
    parser.add_argument("--rows", type=int, default=25, help="ops printed")
    parser.add_argument("--trace", type=Path, default=None, help="write a Chrome trace here")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    for name in ("micro_batch", "wait", "active", "rows"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule
    from transformers import TrainerCallback

    from inheritune_hf import train

    if args.device == "cuda" and not torch.cuda.is_available():
        print("profile_step: no CUDA GPU on this machine; use --device cpu --tiny to run the code path.")
        return 0
    shape = replace(bench.TINY if args.tiny else bench.SHAPES[args.shape], steps=args.wait + args.active + 2)
    settings = bench.Settings(args.micro_batch, compile=args.compile, device=args.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    profiler = profile(
        activities=activities, schedule=schedule(wait=args.wait, warmup=1, active=args.active, repeat=1)
    )

    class Step(TrainerCallback):
        """Advances the profiler's schedule at each optimizer step."""

        def on_step_end(self, *_, **__):
            profiler.step()

    _, train_set = bench.blocks(shape, args.micro_batch * shape.steps)
    _, eval_set = bench.blocks(shape, args.micro_batch)
    model = bench.build_model(shape, args.device)
    with tempfile.TemporaryDirectory() as out, profiler:
        train(model, train_set, eval_set, bench.training_arguments(settings, shape, out), callbacks=[Step()])
    key = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
    print(
        f"## {shape.name}, micro-batch {args.micro_batch}, compile {'on' if args.compile else 'off'}, "
        f"{args.active} steps traced after {args.wait + 1}, sorted by {key}"
    )
    print(profiler.key_averages().table(sort_by=key, row_limit=args.rows))
    if args.trace:
        args.trace.parent.mkdir(parents=True, exist_ok=True)
        profiler.export_chrome_trace(str(args.trace))
        print(f"trace: {args.trace}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
