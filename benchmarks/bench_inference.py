"""Generation speed of the inherited k-block model against its L-block reference, next to the ideal L/k.

    python benchmarks/bench_inference.py        # make bench runs this

Greedy decoding with the KV cache (`generate(do_sample=False, use_cache=True)`), a fixed number of new
tokens, batch 1 and 8. The reference is a random-init llama-style model (cached in benchmarks/.cache/);
the target is its first L/2 blocks, sliced lazily from the saved checkpoint. The two models are timed
alternately, repeats take the median, so background load hits both alike. Speed-up falls short of L/k by
the work that does not scale with depth: embeddings, the LM head over the vocabulary, and the decoding loop.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig

from inheritune_hf.inherit import inherit

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"

CONFIG = dict(
    vocab_size=32000,
    hidden_size=512,
    intermediate_size=1408,
    num_hidden_layers=24,
    num_attention_heads=8,
    num_key_value_heads=8,
    max_position_embeddings=1024,
    tie_word_embeddings=False,
)


def reference_checkpoint() -> Path:
    folder = CACHE / f"inference-llama-{CONFIG['num_hidden_layers']}L"
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(LlamaConfig(**CONFIG)).save_pretrained(folder)
    return folder


def tokens_per_second(model, batch: int, prompt: int, new_tokens: int) -> float:
    ids = torch.randint(1, CONFIG["vocab_size"], (batch, prompt), generator=torch.Generator().manual_seed(batch))
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
        )
    elapsed = time.perf_counter() - start
    assert out.shape == (batch, prompt + new_tokens)
    return batch * new_tokens / elapsed


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    return f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=32, help="Prompt length in tokens.")
    parser.add_argument("--new-tokens", type=int, default=64, help="Tokens generated per sequence.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per model and batch (median kept).")
    parser.add_argument("--batches", default="1,8", help="Comma-separated batch sizes.")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's; 1 is steadier on a busy box).")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    transformers.utils.logging.disable_progress_bar()
    source = reference_checkpoint()
    depth = CONFIG["num_hidden_layers"]
    k = depth // 2
    reference = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    target = inherit(source, k, dtype="float32").eval()  # lazy slice, returned loaded
    models = {"reference": reference, "target": target}

    print(f"bench_inference  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  {machine()}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}")
    print(
        f"llama-style d={CONFIG['hidden_size']}, vocab {CONFIG['vocab_size']}, fp32; reference {depth} blocks vs "
        f"target {k} blocks; greedy, KV cache, prompt {args.prompt}, {args.new_tokens} new tokens, "
        f"median of {args.repeats}"
    )
    print(f"{'batch':>5}{f'L={depth} tok/s':>14}{f'k={k} tok/s':>13}{'speed-up':>10}{'ideal L/k':>11}{'of ideal':>10}")
    for batch in (int(b) for b in args.batches.split(",")):
        for model in models.values():  # warm-up: first-call allocations and kernel selection
            tokens_per_second(model, batch, args.prompt, 4)
        speeds = {name: [] for name in models}
        for _ in range(args.repeats):
            for name, model in models.items():
                speeds[name].append(tokens_per_second(model, batch, args.prompt, args.new_tokens))
        ref, tgt = (statistics.median(speeds[name]) for name in models)
        ideal = depth / k
        print(f"{batch:>5}{ref:>14.1f}{tgt:>13.1f}{tgt / ref:>9.2f}x{ideal:>10.2f}x{tgt / ref / ideal:>9.0%}")


if __name__ == "__main__":
    main()
