"""Slice a ~2 GB llama-style checkpoint to half its blocks three ways; compare wall time and peak memory.

    python benchmarks/bench_slice.py            # make bench runs this

- lazy: `inheritune inherit SRC OUT` (`inheritune_hf.checkpoint`: byte ranges of the needed tensors only);
- naive: `from_pretrained` of the whole reference, in-memory `inherit`, `save_pretrained`;
- mergekit: `mergekit-yaml` passthrough with `layer_range: [0, k]`, when mergekit is installed (it is an
  optional, benchmark-only dependency: found on PATH or in benchmarks/.cache/mergekit-venv).

Each runs in a fresh child process after the source files have been read once (warm page cache for all);
peak RSS is `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` taken in a wrapper process around it. The
random-init reference (TinyLlama-1.1B shapes, bf16, 4 shards of ~500 MB) is made once and cached in
benchmarks/.cache/. Goal (issue 7): lazy peak RSS <= 1.15x the target's bytes, and faster than both.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
SOURCE = CACHE / "slice-llama-2gb"
RSS_GOAL = 1.15

# TinyLlama-1.1B shapes: 22 blocks, 1.10B parameters, 2.2 GB in bf16.
CONFIG = dict(
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
    dtype="bfloat16",
)

# Runs in a wrapper process: start the command, wait, report its wall time and peak RSS.
MEASURE = textwrap.dedent(
    """
    import json, resource, subprocess, sys, time
    start = time.perf_counter()
    code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=sys.stderr)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kB on Linux
    print(json.dumps({"code": code, "wall": wall, "peak_rss": peak}))
    """
)

NAIVE = textwrap.dedent(
    """
    import sys
    from transformers import AutoModelForCausalLM
    from inheritune_hf.inherit import inherit
    src, out, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    reference = AutoModelForCausalLM.from_pretrained(src)
    inherit(reference, k).save_pretrained(out)
    """
)

LAZY = "import sys; from inheritune_hf.cli import main; sys.exit(main(['inherit', *sys.argv[1:]]))"

# Start-up alone (interpreter and imports, the same modules each method loads), to tell it from the work.
STARTUP = {
    "lazy": "import inheritune_hf.cli.inherit",
    "naive": "from transformers import AutoModelForCausalLM; from inheritune_hf.inherit import inherit",
    "mergekit": "import mergekit.scripts.run_yaml",
}


def make_source(folder: Path, shard_bytes: int = 500 * 2**20) -> None:
    """Random-init weights written shard by shard, so making them needs ~one shard of memory."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**CONFIG)
    with torch.device("meta"):
        shapes = {name: p.shape for name, p in AutoModelForCausalLM.from_config(config).state_dict().items()}
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    shards, current, size = [], {}, 0
    for name, shape in shapes.items():
        if name.endswith("norm.weight"):
            tensor = torch.ones(shape, dtype=torch.bfloat16)
        else:
            tensor = (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)
        current[name] = tensor
        size += tensor.numel() * 2
        if size >= shard_bytes:
            shards.append(current)
            current, size = {}, 0
    if current:
        shards.append(current)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, tmp / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
        total += sum(t.numel() * 2 for t in shard.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config.architectures = ["LlamaForCausalLM"]  # mergekit reads the class from here
    config.save_pretrained(tmp)
    os.replace(tmp, folder)


def warm(folder: Path) -> None:
    for path in sorted(folder.glob("*.safetensors")):
        with open(path, "rb") as f:
            while f.read(64 * 2**20):
                pass


def measure(argv: list[str]) -> dict:
    result = subprocess.run([sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, cwd=ROOT)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["code"] != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{result.stderr[-3000:]}")
    return report


def find_mergekit() -> str | None:
    return shutil.which("mergekit-yaml") or next(
        (str(p) for p in [CACHE / "mergekit-venv" / "bin" / "mergekit-yaml"] if p.exists()), None
    )


def target_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("*.safetensors"))


def same_tensors(a: Path, b: Path) -> bool:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    left = AutoModelForCausalLM.from_pretrained(a).state_dict()
    right = AutoModelForCausalLM.from_pretrained(b).state_dict()
    return left.keys() == right.keys() and all(
        left[k].dtype == right[k].dtype and torch.equal(left[k], right[k]) for k in left
    )


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    memory = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")) / 2**20
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="Keep the outputs under benchmarks/.cache/slice-out.")
    parser.add_argument("--repeats", type=int, default=3, help="Interleaved rounds; best wall time is kept.")
    args = parser.parse_args()

    import torch
    import transformers

    if not SOURCE.exists():
        print(f"making the reference checkpoint in {SOURCE} (once) ...", flush=True)
        make_source(SOURCE)
    k = CONFIG["num_hidden_layers"] // 2
    out_root = CACHE / "slice-out"
    shutil.rmtree(out_root, ignore_errors=True)
    out_root.mkdir(parents=True)
    warm(SOURCE)

    outs = {name: out_root / name for name in ("lazy", "naive", "mergekit")}
    commands = {  # name: (key, command)
        "lazy (inheritune inherit)": (
            "lazy",
            [sys.executable, "-c", LAZY, str(SOURCE), str(outs["lazy"]), "--num-layers", str(k)],
        ),
        "naive (from_pretrained+inherit+save)": (
            "naive",
            [sys.executable, "-c", NAIVE, str(SOURCE), str(outs["naive"]), str(k)],
        ),
    }
    pythons = {"lazy": sys.executable, "naive": sys.executable}
    mergekit = find_mergekit()
    note = ""
    if mergekit:
        recipe = out_root / "passthrough.yml"
        recipe.write_text(
            f"slices:\n  - sources:\n      - model: {SOURCE}\n        layer_range: [0, {k}]\n"
            "merge_method: passthrough\ndtype: bfloat16\n"
        )
        commands["mergekit-yaml passthrough"] = (
            "mergekit",
            [mergekit, str(recipe), str(outs["mergekit"]), "--no-copy-tokenizer", "--no-write-model-card", "--quiet"],
        )
        pythons["mergekit"] = open(mergekit).readline().removeprefix("#!").strip()  # the script's interpreter
    else:
        note = "mergekit: not installed, skipped (pip install mergekit to compare)"
    # Rounds interleave the methods so that load from other processes hits them alike; best wall time and
    # highest peak RSS over the rounds are reported.
    samples: dict[str, list[dict]] = {name: [] for name in commands}
    startups: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, (key, command) in commands.items():
            shutil.rmtree(outs[key], ignore_errors=True)
            warm(SOURCE)
            samples[name].append(measure(command))
            startups[name].append(measure([pythons[key], "-c", STARTUP[key]])["wall"])
    runs = {
        name: {
            "wall": min(r["wall"] for r in rs),
            "peak_rss": max(r["peak_rss"] for r in rs),
            "walls": [r["wall"] for r in rs],
            "startup": min(startups[name]),
        }
        for name, rs in samples.items()
    }

    size = target_bytes(outs["lazy"])
    source_size = target_bytes(SOURCE)
    print(f"bench_slice  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  {machine()}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}")
    print(
        f"reference: llama-style, {CONFIG['num_hidden_layers']} blocks, {source_size / 1e9:.2f} GB bf16 in "
        f"{len(list(SOURCE.glob('*.safetensors')))} shards -> first {k} blocks, target {size / 1e9:.2f} GB"
    )
    lazy = runs["lazy (inheritune inherit)"]
    print(f"best wall time and highest peak RSS of {args.repeats} interleaved round(s), warm page cache")
    print(
        f"{'method':<38}{'wall s':>8}{'peak RSS GB':>13}{'RSS/target':>12}{'time vs lazy':>14}{'RSS vs lazy':>13}"
        f"{'start-up s':>12}{'work s':>8}{'work vs lazy':>14}  all walls s"
    )
    lazy_work = lazy["wall"] - lazy["startup"]
    for name, run in runs.items():
        work = run["wall"] - run["startup"]
        print(
            f"{name:<38}{run['wall']:>8.1f}{run['peak_rss'] / 1e9:>13.2f}{run['peak_rss'] / size:>12.2f}"
            f"{run['wall'] / lazy['wall']:>13.1f}x{run['peak_rss'] / lazy['peak_rss']:>12.1f}x"
            f"{run['startup']:>12.1f}{work:>8.1f}{work / lazy_work:>13.1f}x  "
            + ", ".join(f"{wall:.1f}" for wall in run["walls"])
        )
    print("start-up: best time of a child that only imports what the method imports; work = wall - start-up")
    if note:
        print(note)
    rss_ok = lazy["peak_rss"] <= RSS_GOAL * size
    others = [run for name, run in runs.items() if run is not lazy]
    fastest = all(lazy["wall"] < run["wall"] for run in others)
    print(
        f"goal peak RSS <= {RSS_GOAL}x target bytes: {'met' if rss_ok else 'MISSED'} ({lazy['peak_rss'] / size:.2f}x)"
    )
    print(f"goal faster than {len(others)} other method(s): {'met' if fastest else 'MISSED'}")
    print(f"lazy == naive, tensor for tensor: {same_tensors(outs['lazy'], outs['naive'])}")
    if mergekit:
        print(f"lazy == mergekit, tensor for tensor: {same_tensors(outs['lazy'], outs['mergekit'])}")
    if not args.keep:
        shutil.rmtree(out_root, ignore_errors=True)


if __name__ == "__main__":
    main()
