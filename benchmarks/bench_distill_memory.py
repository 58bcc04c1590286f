"""Benchmark the peak memory of a distilled training step against a plain one, at GPT-2's 50K vocabulary, on CPU.

The issue's bound: a distilled step needs at most 1.3x a plain step's peak memory. At a 50K vocabulary the logits
dominate a small model's step ([batch, T, vocab] fp32 is 411 MB at batch 8, T 256), so this measures what the
distillation adds around them: the teacher's logits, the KL's softmaxes, the gradient it keeps.

Each variant runs in a fresh subprocess (tracemalloc does not see torch's allocations, and a process's peak RSS
never goes down): build the models and a `Trainer`, note the resident memory, run one `Trainer.training_step`
(forward and backward; the optimizer step is the same for every variant and left out), read the peak RSS. glibc is
told to hand every allocation over 64 KB straight back to the system (`MALLOC_MMAP_THRESHOLD_`), so the RSS follows
the live tensors instead of the allocator's cache. The step's memory is the peak minus the resident memory before
it. Variants, repeated `--repeats` times (median):

    plain               Trainer, next-token loss (the model's own CE)
    distilled           DistillationTrainer, alpha 0.5, T 2 (CE and KL computed together, chunked)
    plain+ls            plain with label smoothing 0.1 (Trainer's label smoother)
    distilled+ls        distilled with label smoothing: Trainer's smoothed loss, plus the chunked KL

    .venv/bin/python benchmarks/bench_distill_memory.py [--repeats 3] [--json memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("plain", "distilled", "plain+ls", "distilled+ls")
GOAL = 1.3


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def measure(variant: str, options: argparse.Namespace) -> dict:
    """One training step of `variant` in this (fresh) process: resident memory before, peak during, in bytes."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from inheritune_hf.distill import DistillationTrainer
    from inheritune_hf.settings import DistillationConfig

    hf_logging.set_verbosity_error()
    torch.set_num_threads(options.threads)

    def gpt2(layers: int, seed: int) -> GPT2LMHeadModel:
        torch.manual_seed(seed)
        config = GPT2Config(
            vocab_size=options.vocab, n_positions=options.block, n_embd=options.width, n_layer=layers,
            n_head=max(1, options.width // 64), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )  # fmt: skip
        return GPT2LMHeadModel(config)

    student = gpt2(options.student_layers, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, use_cpu=True, report_to="none", per_device_train_batch_size=options.batch,
            label_smoothing_factor=0.1 if variant.endswith("+ls") else 0.0,
        )  # fmt: skip
        if variant.startswith("distilled"):
            trainer = DistillationTrainer(
                model=student, args=args, teacher=gpt2(options.teacher_layers, seed=1),
                distillation=DistillationConfig(weight=0.5, temperature=2.0),
            )  # fmt: skip
        else:
            trainer = Trainer(model=student, args=args)
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer's training loop, which is not run here
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(0, options.vocab, (options.batch, options.block), generator=generator)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
        before, peak_before = _rss_bytes(), _peak_rss_bytes()
        started = time.perf_counter()
        loss = trainer.training_step(student, batch)
        seconds = time.perf_counter() - started
        peak = _peak_rss_bytes()
    return {
        "variant": variant, "rss_before": before, "peak_before": peak_before, "peak": peak,
        "step_bytes": peak - before, "seconds": seconds, "loss": float(loss),
    }  # fmt: skip


def run_variant(variant: str, options: argparse.Namespace) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(options.threads)}
    command = [sys.executable, __file__, "--variant", variant, *_size_flags(options)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"variant {variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _size_flags(options: argparse.Namespace) -> list[str]:
    names = ("vocab", "width", "student_layers", "teacher_layers", "block", "batch", "threads")
    return [item for name in names for item in (f"--{name.replace('_', '-')}", str(getattr(options, name)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--student-layers", type=int, default=2)
    parser.add_argument("--teacher-layers", type=int, default=4)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # the subprocess's own flag
    options = parser.parse_args()
    if options.variant:
        print(json.dumps(measure(options.variant, options)))
        return

    logits_mb = options.batch * options.block * options.vocab * 4 / 2**20
    print(
        f"GPT-2 shape, vocab {options.vocab}, width {options.width}, student {options.student_layers}L, teacher "
        f"{options.teacher_layers}L, batch {options.batch} x T {options.block}: fp32 logits {logits_mb:.0f} MiB; "
        f"{options.repeats} repeats, variants interleaved"
    )
    runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    for _ in range(options.repeats):  # interleaved, so a change in the machine's load touches every variant alike
        for variant in VARIANTS:
            runs[variant].append(run_variant(variant, options))
    median = {
        v: {k: statistics.median(r[k] for r in rs) for k in ("step_bytes", "peak", "seconds")}
        for v, rs in runs.items()
    }
    masked = [v for v, rs in runs.items() for r in rs if r["peak_before"] >= r["peak"]]
    print(f"\n{'variant':14s}{'step peak MiB':>15s}{'x logits':>10s}{'process peak MiB':>18s}{'step s':>9s}")
    for variant, m in median.items():
        print(
            f"{variant:14s}{m['step_bytes'] / 2**20:15.0f}{m['step_bytes'] / 2**20 / logits_mb:10.2f}"
            f"{m['peak'] / 2**20:18.0f}{m['seconds']:9.2f}"
        )
    ratios = {
        "distilled / plain": median["distilled"]["step_bytes"] / median["plain"]["step_bytes"],
        "distilled+ls / plain+ls": median["distilled+ls"]["step_bytes"] / median["plain+ls"]["step_bytes"],
    }
    print()
    for name, ratio in ratios.items():
        print(
            f"{name:26s} {ratio:.2f}x the step's peak memory (goal <= {GOAL}x): {'met' if ratio <= GOAL else 'MISSED'}"
        )
    if masked:
        print(f"warning: in {masked} the process peaked before the step, so the step's peak is understated")
    if options.json:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from inheritune_hf.io import write_json

        write_json(options.json, {"settings": vars(options), "runs": runs, "ratios": ratios})


if __name__ == "__main__":
    main()
