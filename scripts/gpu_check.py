"""The GPU check (`make gpu-check`): what a CPU laptop cannot show, measured on one CUDA GPU in under 8 minutes.

    python scripts/gpu_check.py [--steps 30] [--batch 8] [--timeout 180]

One table, one row per check, each run on its own so a failure is reported in its row and the others still run:

- training tokens/s and MFU of `inheritune_hf.train` on a GPT-2-medium-shaped model (24 layers, 1024 wide, 16 heads,
  vocabulary 50304, 1024-token blocks) in bf16 autocast + TF32 + fused AdamW + sdpa, against a plain torch loop on
  the same model, data and optimizer (goal: >= 0.95x the loop);
- the same pair with `torch.compile`;
- `recipes/gpt2_medium.py --smoke` in bf16 on the GPU, and once under `recipes/accelerate_configs/fsdp.yaml` with
  one process (FSDP cannot run on CPU: accelerate silently turns it off with `use_cpu`);
- `analyze_attention` on a model loaded with sdpa, its attention setting restored afterwards.

MFU = 6 x parameters x tokens / time / peak, the peak being the GPU's dense bf16 FLOP/s looked up from its name
(H100 / H200 989 TFLOP/s, A100 312, ...): an assumption, printed with the table. Without CUDA it exits at once
with status 0 and says so: the check needs a GPU and is never part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Dense bf16 peak FLOP/s by a substring of `torch.cuda.get_device_name()`, first match wins (vendor datasheets).
PEAK_BF16 = [("H200", 989e12), ("H100", 989e12), ("GH200", 989e12), ("A100", 312e12), ("L40", 181e12), ("A10", 125e12)]
GPT2_MEDIUM = {"n_layer": 24, "n_embd": 1024, "n_head": 16, "vocab_size": 50304, "n_positions": 1024}


def peak_flops(name: str) -> float | None:
    """The dense bf16 peak of a GPU by its name, or None when it is not in `PEAK_BF16` (MFU is then left out)."""
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


def gpt2_medium():
    """A GPT-2-medium-shaped model on the GPU, without dropout as the paper trained it, attention on sdpa."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(**GPT2_MEDIUM, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    config._attn_implementation = "sdpa"
    return GPT2LMHeadModel(config).cuda()


def blocks(count: int, seq_len: int = 1024):
    """`count` random blocks of token ids (labels = inputs, as packed causal-LM blocks are), the same every call."""
    import datasets
    import torch

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, GPT2_MEDIUM["vocab_size"], (count, seq_len), generator=generator).tolist()
    return datasets.Dataset.from_dict({"input_ids": ids, "labels": ids}).with_format("torch")


def trainer_throughput(steps: int, batch: int, compile_model: bool) -> dict:
    """Tokens/s of `inheritune_hf.train` over the steps after a warm-up of 5 (compilation and allocator excluded)."""
    from transformers import TrainerCallback, TrainingArguments

    from inheritune_hf import train

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.marks: dict[int, float] = {}

        def on_step_end(self, args, state, control, **kwargs):
            import torch

            torch.cuda.synchronize()
            self.marks[state.global_step] = time.perf_counter()

    model = gpt2_medium()
    clock = Clock()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            max_steps=steps,
            per_device_train_batch_size=batch,
            learning_rate=3e-4,
            bf16=True,
            tf32=True,
            optim="adamw_torch_fused",
            torch_compile=compile_model,
            eval_strategy="no",
            save_strategy="no",
            logging_steps=steps,
            report_to="none",
            dataloader_num_workers=2,
        )
        train(model, blocks(batch * steps), blocks(batch), args, callbacks=[clock])
    seconds = clock.marks[steps] - clock.marks[5]
    return {"tokens_per_s": (steps - 5) * batch * 1024 / seconds, "params": sum(p.numel() for p in model.parameters())}


def loop_throughput(steps: int, batch: int, compile_model: bool) -> dict:
    """Tokens/s of a plain torch loop: the same model, data, bf16 autocast, TF32, fused AdamW and clipping."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model = gpt2_medium()
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    forward = torch.compile(model) if compile_model else model
    data = blocks(batch * steps)["input_ids"].cuda()
    marks = {}
    for step in range(1, steps + 1):
        ids = data[(step - 1) * batch : step * batch]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = forward(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        marks[step] = time.perf_counter()
    return {"tokens_per_s": (steps - 5) * batch * 1024 / (marks[steps] - marks[5]), "params": params}


def recipe_smoke(fsdp: bool, timeout: int) -> str:
    """`recipes/gpt2_medium.py --smoke` in bf16 on the GPU; under the FSDP accelerate config with one process."""
    with tempfile.TemporaryDirectory() as out:
        flags = ["--smoke", "--use_cpu", "false", "--bf16", "true", "--output_dir", out]
        script = str(ROOT / "recipes" / "gpt2_medium.py")
        if fsdp:
            config = str(ROOT / "recipes" / "accelerate_configs" / "fsdp.yaml")
            launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config]
            command = [*launcher, "--num_processes", "1", script, *flags]
        else:
            command = [sys.executable, script, *flags]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(
                done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
            )
        if not (Path(out) / "model" / "model.safetensors").is_file():
            raise RuntimeError("finished without model/model.safetensors")
        return f"ok in {time.perf_counter() - started:.0f} s"


def attention_check() -> str:
    """`analyze_attention` on an sdpa model: it captures the probabilities, then the model is on sdpa again."""
    import torch

    from inheritune_hf import analyze_attention

    model = gpt2_medium().eval()
    ids = torch.randint(0, GPT2_MEDIUM["vocab_size"], (4 * 128,))
    report = analyze_attention(model, input_ids=ids, num_samples=4, seq_len=128)
    setting = model.config._attn_implementation
    if setting != "sdpa":
        raise RuntimeError(f"attention left on {setting!r}, not sdpa")
    return f"ok: {len(report.max_rank)} layers, attention back on sdpa"


def row(name: str, check: Callable[[], object]) -> tuple[str, object]:
    """One check, its failure caught and reported in its row (the table is the point, not the first error)."""
    try:
        return name, check()
    except Exception as err:  # noqa: BLE001 - every failure is a row of the table
        traceback.print_exc(file=sys.stderr)
        return name, f"FAILED: {type(err).__name__}: {str(err)[:160]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps per throughput row (5 are warm-up)")
    parser.add_argument("--batch", type=int, default=8, help="1024-token blocks per step")
    parser.add_argument("--timeout", type=int, default=180, help="seconds allowed to each recipe smoke run")
    args = parser.parse_args(argv)
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        print("gpu-check: no CUDA GPU on this machine; nothing to measure (it runs on one CUDA GPU in < 8 min).")
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device = torch.cuda.get_device_name()
    peak = peak_flops(device)
    started = time.perf_counter()
    results = []
    for compile_model in (False, True):
        suffix = " + torch.compile" if compile_model else ""
        results.append(
            row(f"inheritune_hf.train{suffix}", lambda c=compile_model: trainer_throughput(args.steps, args.batch, c))
        )
        results.append(
            row(f"plain torch loop{suffix}", lambda c=compile_model: loop_throughput(args.steps, args.batch, c))
        )
    results.append(row("gpt2_medium.py --smoke (bf16)", lambda: recipe_smoke(False, args.timeout)))
    results.append(row("gpt2_medium.py --smoke (FSDP, 1 process)", lambda: recipe_smoke(True, args.timeout)))
    results.append(row("analyze_attention (sdpa restored)", attention_check))

    print(f"\n## GPU check: {device}, {time.strftime('%Y-%m-%d')}, {time.perf_counter() - started:.0f} s")
    print(f"MFU = 6 x params x tokens/s / peak; peak assumed {peak / 1e12:.0f} TFLOP/s dense bf16" if peak else
          "MFU left out: this GPU's bf16 peak is not in PEAK_BF16 (an assumption table; add it)")  # fmt: skip
    print("\n| check | tokens/s | MFU | vs loop | result |\n|---|---|---|---|---|")
    loops = {name.replace("plain torch loop", ""): r for name, r in results if name.startswith("plain torch loop")}
    for name, result in results:
        if isinstance(result, dict):
            mfu = f"{6 * result['params'] * result['tokens_per_s'] / peak:.1%}" if peak else "?"
            loop = loops.get(name.replace("inheritune_hf.train", ""))
            ratio = (
                f"{result['tokens_per_s'] / loop['tokens_per_s']:.2f}x"
                if isinstance(loop, dict) and loop is not result
                else ""
            )
            print(f"| {name} | {result['tokens_per_s']:,.0f} | {mfu} | {ratio} | ok |")
        else:
            print(f"| {name} |  |  |  | {result} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
