"""Benchmark: `inheritune_hf.train` (Trainer) against a plain torch loop with identical settings, side by side.

Issue 22 asks whether training through Trainer reaches the chip's limit (>= 45% MFU on the GPT-2-medium shape,
>= 40% on an XL-shaped inherited model, each >= 0.95x a plain loop). Both ways train the same seeded model on the
same random 1024-token blocks with the same optimizer (fused AdamW, betas 0.9 / 0.95, weight decay 0.1, clipping
1.0), bf16 autocast, TF32 and sdpa, over a small grid: micro-batch x torch.compile on/off x (when liger_kernel is
installed) Liger's kernels applied to the model. Each cell prints tokens/s, MFU and Trainer's ratio to the loop.

MFU = 6 x parameters x tokens/s / peak, the peak the GPU's dense bf16 FLOP/s from `PEAK_BF16` by its name (an
assumption from vendor datasheets) unless `--peak_tflops` gives it; on an unknown GPU or on CPU it is left out.
The first `--warmup` steps (compilation, allocator growth, cuDNN / cuBLAS selection) are not timed; the
compile warm-up is reported separately, since a real run pays it once.

    python benchmarks/bench_gpu_train.py                                 # GPT-2-medium shape on one GPU
    python benchmarks/bench_gpu_train.py --shape xl --micro_batch 4 8    # 24 of 48 XL blocks, width 1600
    python benchmarks/bench_gpu_train.py --device cpu --tiny             # the same code on tiny shapes (a test)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Dense bf16 peak FLOP/s by a substring of `torch.cuda.get_device_name()`, first match wins (vendor datasheets).
PEAK_BF16 = [("H200", 989e12), ("H100", 989e12), ("GH200", 989e12), ("A100", 312e12), ("L40", 181e12), ("A10", 125e12)]


@dataclass(frozen=True)
class Shape:
    """A GPT-2-style model and the blocks it trains on; `steps` include `warmup` untimed steps."""

    name: str
    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int = 50304
    seq_len: int = 1024
    steps: int = 30
    warmup: int = 5

    def config(self, n_layer: int | None = None):
        """A GPT-2 config of this shape (no dropout, as the paper trained it), attention on sdpa."""
        from transformers import GPT2Config

        config = GPT2Config(
            n_layer=n_layer or self.n_layer, n_embd=self.n_embd, n_head=self.n_head, vocab_size=self.vocab_size,
            n_positions=self.seq_len, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            bos_token_id=min(50256, self.vocab_size - 1), eos_token_id=min(50256, self.vocab_size - 1),
        )  # fmt: skip
        config._attn_implementation = "sdpa"
        return config


#: The shapes of issue 22: GPT-2 medium, and the XL-shaped inherited model (24 of 48 blocks, width 1600, 25 heads).
SHAPES = {
    "medium": Shape("gpt2-medium", n_layer=24, n_embd=1024, n_head=16),
    "xl": Shape("gpt2-xl, 24 of 48 blocks", n_layer=24, n_embd=1600, n_head=25),
}
#: The same code on CPU in seconds: what the test runs so that an API change is caught without a GPU.
TINY = Shape("tiny", n_layer=2, n_embd=64, n_head=4, vocab_size=512, seq_len=64, steps=3, warmup=1)


def peak_flops(name: str) -> float | None:
    """The dense bf16 peak of a GPU by its name, or None when it is not in `PEAK_BF16` (MFU is then left out)."""
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


def synchronize(device: str) -> None:
    """Wait for the device's queued work, so that a clock reads finished steps (a no-op on CPU)."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


class StepClock:
    """Marks at step ends that do not stop the host: CUDA events on the GPU (read once, at the end), the host clock
    on CPU.

    A `synchronize` after every step would leave the GPU idle while the host launches the next step (fetches the
    batch, runs the Python of the optimizer and the model), a bubble a real run does not have; it would understate
    both ways alike and hide any sync the training code itself adds, which the Trainer / loop ratio is there to show.
    An event's time is when the GPU reaches it, so the interval between two marks is the GPU's wall time between
    them, host-side compilation included.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.marks: dict[int, Any] = {}

    def mark(self, step: int) -> None:
        import torch

        if self.device == "cuda":
            self.marks[step] = torch.cuda.Event(enable_timing=True)
            self.marks[step].record()
        else:
            self.marks[step] = time.perf_counter()

    def seconds(self, start: int, end: int) -> float:
        """Seconds from mark `start` to mark `end` (waits for the GPU to reach `end`)."""
        if self.device == "cuda":
            self.marks[end].synchronize()
            return self.marks[start].elapsed_time(self.marks[end]) / 1000
        return self.marks[end] - self.marks[start]


def build_model(shape: Shape, device: str, n_layer: int | None = None):
    """The seeded model of `shape` on `device` (every call the same weights)."""
    import torch
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(shape.config(n_layer)).to(device)


def blocks(shape: Shape, count: int):
    """`count` random blocks of token ids as a tensor, and the same blocks as a torch-formatted `datasets.Dataset`.

    The tensor is built here, not read back from the dataset: datasets 5 returns a `Column` for `ds["input_ids"]`,
    not a tensor, even under `with_format("torch")` (what broke the loop rows on 2026-12-04).
    """
    import datasets
    import torch

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, shape.vocab_size, (count, shape.seq_len), generator=generator)
    rows = ids.tolist()
    return ids, datasets.Dataset.from_dict({"input_ids": rows, "labels": rows}).with_format("torch")


@dataclass(frozen=True)
class Settings:
    """One cell of the grid: what both ways share."""

    micro_batch: int
    compile: bool = False
    liger: bool = False
    device: str = "cuda"

    @property
    def bf16(self) -> bool:
        return self.device == "cuda"  # bf16 autocast and TF32 on the GPU; fp32 on CPU, where the run is a check


def training_arguments(settings: Settings, shape: Shape, output_dir: str):
    """The TrainingArguments both ways mirror: the GPT-2 recipes' optimizer and precision, no eval, no saves."""
    from transformers import TrainingArguments

    cuda = settings.device == "cuda"
    return TrainingArguments(
        output_dir=output_dir,
        max_steps=shape.steps,
        per_device_train_batch_size=settings.micro_batch,
        learning_rate=3e-4,
        weight_decay=0.1,
        adam_beta1=0.9,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        lr_scheduler_type="constant",
        bf16=settings.bf16,
        tf32=cuda,
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        torch_compile=settings.compile,
        # inductor on the GPU; on CPU the compile cell checks the wiring, and "eager" needs no C++ compiler. Left
        # unset without compile: TrainingArguments turns torch_compile on whenever a backend is named.
        torch_compile_backend=("inductor" if cuda else "eager") if settings.compile else None,
        use_liger_kernel=settings.liger,
        use_cpu=not cuda,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=shape.steps,
        logging_nan_inf_filter=False,  # as the GPU recipes set it: no device sync per micro-batch
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=2 if cuda else 0,
        dataloader_pin_memory=cuda,
    )


def _rate(clock: StepClock, shape: Shape, micro_batch: int) -> float:
    """Tokens/s over the steps after the warm-up."""
    timed = shape.steps - shape.warmup
    return timed * micro_batch * shape.seq_len / clock.seconds(shape.warmup, shape.steps)


def trainer_throughput(shape: Shape, settings: Settings) -> dict[str, Any]:
    """Tokens/s of `inheritune_hf.train` after the warm-up; `warmup_s` is the warm-up steps' time (compile included)."""
    from transformers import TrainerCallback

    from inheritune_hf import train

    clock = StepClock(settings.device)

    class Marks(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock.mark(0)

        def on_step_end(self, args, state, control, **kwargs):
            clock.mark(state.global_step)

    model = build_model(shape, settings.device)
    _, train_set = blocks(shape, settings.micro_batch * shape.steps)
    _, eval_set = blocks(shape, settings.micro_batch)
    with tempfile.TemporaryDirectory() as out:
        train(model, train_set, eval_set, training_arguments(settings, shape, out), callbacks=[Marks()])
    return {
        "tokens_per_s": _rate(clock, shape, settings.micro_batch),
        "warmup_s": clock.seconds(0, shape.warmup),
        "params": sum(p.numel() for p in model.parameters()),
    }


def loop_throughput(shape: Shape, settings: Settings) -> dict[str, Any]:
    """Tokens/s of a plain torch loop with Trainer's settings: the same model, data, precision, optimizer and clip."""
    import torch

    device = settings.device
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model = build_model(shape, device)
    if settings.liger:  # what Trainer's use_liger_kernel does to the model
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=model)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=3e-4, betas=(0.9, 0.95), fused=device == "cuda")
    forward = torch.compile(model, backend="inductor" if device == "cuda" else "eager") if settings.compile else model
    ids, _ = blocks(shape, settings.micro_batch * shape.steps)
    ids = ids.to(device)
    synchronize(device)
    clock = StepClock(device)
    clock.mark(0)
    for step in range(1, shape.steps + 1):
        batch = ids[(step - 1) * settings.micro_batch : step * settings.micro_batch]
        with torch.autocast(device, dtype=torch.bfloat16, enabled=settings.bf16):
            loss = forward(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.mark(step)
    return {
        "tokens_per_s": _rate(clock, shape, settings.micro_batch),
        "warmup_s": clock.seconds(0, shape.warmup),
        "params": params,
    }


def mfu(result: dict[str, Any], peak: float | None) -> float | None:
    """6 x parameters x tokens/s over the peak: the model FLOPs utilisation (None without a peak)."""
    return 6 * result["params"] * result["tokens_per_s"] / peak if peak else None


def device_and_peak(device: str, peak_tflops: float | None) -> tuple[str, float | None]:
    """The device's name and its bf16 peak (the override first, then `PEAK_BF16` by name; None on CPU)."""
    import platform

    import torch

    if device == "cuda":
        name = torch.cuda.get_device_name()
        return name, peak_tflops * 1e12 if peak_tflops else peak_flops(name)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)", peak_tflops * 1e12 if peak_tflops else None


def grid(micro_batches: list[int], compile_modes: list[bool], liger: bool, device: str) -> list[Settings]:
    """The cells to measure: every micro-batch x compile mode, and the same with Liger where it is asked for."""
    cells = [Settings(b, c, False, device) for b in micro_batches for c in compile_modes]
    return cells + ([replace(cell, liger=True) for cell in cells] if liger else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="medium")
    parser.add_argument("--micro_batch", type=int, nargs="+", default=[8, 16], help="1024-token blocks per step")
    parser.add_argument("--compile", choices=["off", "on", "both"], default="both", help="torch.compile")
    parser.add_argument("--liger", action="store_true", help="add Liger cells (needs liger_kernel installed)")
    parser.add_argument("--steps", type=int, default=None, help="steps per cell, the first --warmup untimed")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--peak_tflops", type=float, default=None, help="the chip's dense bf16 peak (overrides)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes: the code path in seconds, on CPU too")
    args = parser.parse_args(argv)

    shape = TINY if args.tiny else SHAPES[args.shape]
    steps = shape.steps if args.steps is None else args.steps
    warmup = shape.warmup if args.warmup is None else args.warmup
    if not 0 < warmup < steps:
        parser.error(f"--warmup must be in [1, --steps - 1] (untimed steps before the timed ones), got {warmup}")
    if min(args.micro_batch) < 1:
        parser.error(f"--micro_batch must be >= 1, got {args.micro_batch}")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        parser.error(f"--peak_tflops must be > 0 (TFLOP/s), got {args.peak_tflops}")
    if args.liger and find_spec("liger_kernel") is None:
        parser.error("--liger needs liger_kernel installed (pip install liger-kernel)")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu_train: no CUDA GPU on this machine; use --device cpu --tiny to run the code path.")
        return 0
    shape = replace(shape, steps=steps, warmup=warmup)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    name, peak = device_and_peak(args.device, args.peak_tflops)
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    import transformers

    print(
        f"## Trainer vs a plain loop: {shape.name} ({shape.n_layer} layers, width {shape.n_embd}, {shape.n_head} "
        f"heads, vocabulary {shape.vocab_size}, blocks of {shape.seq_len}); {name}; {time.strftime('%Y-%m-%d')}; "
        f"torch {torch.__version__}, transformers {transformers.__version__}; {steps} steps, {warmup} untimed"
    )
    print(
        f"MFU = 6 x params x tokens/s / {peak / 1e12:,.0f} TFLOP/s (dense bf16)" if peak else
        "MFU left out: no bf16 peak for this device (give --peak_tflops)"
    )  # fmt: skip
    print("\n| micro-batch | compile | liger | way | tokens/s | MFU | vs loop | warm-up s |")
    print("|---|---|---|---|---|---|---|---|")
    for cell in grid(args.micro_batch, compiles, args.liger, args.device):
        loop_tokens_per_s = None
        for way, measure in (("loop", loop_throughput), ("Trainer", trainer_throughput)):
            result = measure(shape, cell)
            if args.device == "cuda":
                torch.cuda.empty_cache()
            loop_tokens_per_s = loop_tokens_per_s or result["tokens_per_s"]  # the loop runs first
            share = mfu(result, peak)
            ratio = result["tokens_per_s"] / loop_tokens_per_s
            print(  # each row as soon as it is measured: a run cut short by its caller keeps what it measured
                f"| {cell.micro_batch} | {'on' if cell.compile else 'off'} | {'on' if cell.liger else 'off'} | {way} | "
                f"{result['tokens_per_s']:,.0f} | {'?' if share is None else f'{share:.1%}'} | {ratio:.2f}x | "
                f"{result['warmup_s']:.1f} |",
                flush=True,
            )
    print("\nGoals (issue 22): Trainer >= 45% MFU on gpt2-medium, >= 40% on the XL shape, >= 0.95x the loop.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
