"""Benchmark: `analyze_attention` against the naive way of the paper's notebook, on CPU.

Both run on the same random-init GPT-2-medium-shaped model (24 layers, 16 heads, d=1024) and the same 32
windows of T=256 tokens, batch 8, fp32:

- **naive**: an eager forward with `output_attentions=True` (every layer's probabilities at once), then
  `numpy.linalg.svd` and a column sort per (sample, head), in Python loops;
- **inheritune**: `analyze_attention`, which reduces each layer's probabilities inside the forward pass.

Each measurement runs in its own child process, so peak memory is that process's resident high-water mark
during the analysis (VmHWM, reset after the model is built) minus the resident size before it: the memory
the analysis itself needs beyond the weights. Repeating at 12 layers shows how memory grows with depth.
Both methods' mean ranks are compared, so the speed-up is for the same numbers. "stats s" is the time spent
turning attention probabilities into ranks and masses, "fwd s" the rest (the forward passes); on a shared
machine, CPU time is steadier than wall time.

    .venv/bin/python benchmarks/bench_attention.py            # 24 and 12 layers, ~15 min on 2 cores
    .venv/bin/python benchmarks/bench_attention.py --layers 24 --samples 8   # quicker look

`--ratio` answers the other question, what the whole report costs beside the floor it cannot beat: the time of
`analyze_attention` (rank, mass, Block Influence, angular distances) over a plain forward pass of the model's
body (`model.base_model`, sdpa, no statistics, no LM head) on the same samples, beside the full model's forward
(with the LM head) and the naive way, each the median of `--repeats` alternating runs, and the median of the
report / body ratios of back-to-back pairs (issue 12: goal <= 1.2x at GPT-2-medium width, 12 layers, T=256,
8 samples). `--profile` adds where the report's CPU time goes; `--threads 1` gives steadier CPU-time ratios on a
shared machine:

    .venv/bin/python benchmarks/bench_attention.py --ratio --layers 12 --samples 8 --profile

`--device cuda` runs `--ratio` on the GPU (issue 21: goal <= 2x at the paper's 100 x 100 on 24 layers of width
1024; the naive way, which reads probabilities with numpy, is left out there):

    python benchmarks/bench_attention.py --ratio --device cuda --layers 24 --samples 100 --seq-len 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

TAU = ETA = 0.9


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class PeakMemory:
    """Resident-set high-water mark of this process over a region, in MiB above the level at its start."""

    def __enter__(self) -> PeakMemory:
        import gc

        gc.collect()
        self.start = _status_kb("VmRSS")
        try:  # writing 5 resets VmHWM to the current RSS (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
            self.polled = None
        except OSError:  # fall back to polling
            self.polled, self._stop = self.start, threading.Event()
            threading.Thread(target=self._poll, daemon=True).start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            self.polled = max(self.polled, _status_kb("VmRSS"))

    def __exit__(self, *exc) -> None:
        if self.polled is None:
            peak = _status_kb("VmHWM")
        else:
            self._stop.set()
            peak = self.polled
        self.peak_mib = (peak - self.start) / 1024
        self.base_mib = self.start / 1024


def build(layers: int, samples: int, seq_len: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=layers, n_embd=1024, n_head=16, n_positions=1024, vocab_size=50257)
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, config.vocab_size, (samples, seq_len), generator=torch.Generator().manual_seed(1))
    return model, ids


def naive(model, ids, batch_size: int) -> tuple[list[list[float]], float]:
    """The paper notebook's way: all attentions of a batch at once, then per-head full numpy SVDs."""
    import numpy as np
    import torch

    model.set_attn_implementation("eager")
    layers, heads = model.config.n_layer, model.config.n_head
    rank_sums, mass_sums = np.zeros((layers, heads)), np.zeros((layers, heads))
    stats_seconds = 0.0
    for batch in ids.split(batch_size):
        with torch.no_grad():
            attentions = model(batch, output_attentions=True).attentions
        start = time.perf_counter()
        for layer, attention in enumerate(attentions):
            a = attention.numpy()
            for n in range(a.shape[0]):
                for h in range(heads):
                    _, s, _ = np.linalg.svd(a[n, h])
                    energy = s**2
                    rank_sums[layer, h] += np.argmax(np.cumsum(energy) >= TAU * energy.sum() * (1 - 1e-5)) + 1
                    shares = np.sort((a[n, h] ** 2).sum(axis=0))[::-1]
                    mass_sums[layer, h] += np.argmax(np.cumsum(shares) >= ETA * shares.sum() * (1 - 1e-5)) + 1
        stats_seconds += time.perf_counter() - start
        del attentions, a
    return (rank_sums / ids.shape[0]).tolist(), stats_seconds


def inheritune(model, ids, batch_size: int) -> tuple[list[list[float]], float]:
    import inheritune_hf.analyze as analyze
    import inheritune_hf.analyze.capture as capture

    stats_seconds = 0.0
    original = capture.attention_rank, capture.attention_mass

    def timed(function):
        def wrapper(*args, **kwargs):
            nonlocal stats_seconds
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                stats_seconds += time.perf_counter() - start

        return wrapper

    capture.attention_rank, capture.attention_mass = timed(original[0]), timed(original[1])
    try:
        report = analyze.analyze_attention(
            model, input_ids=ids, num_samples=ids.shape[0], seq_len=ids.shape[1], batch_size=batch_size, progress=False
        )
    finally:
        capture.attention_rank, capture.attention_mass = original
    return report.rank, stats_seconds


def ratio(args: argparse.Namespace) -> None:
    """Median wall and CPU time of each way over the same samples, side by side, and their ratio to the body."""
    import statistics

    import torch

    import inheritune_hf.analyze as analyze

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA GPU on this machine")
    model, ids = build(args.layers[0], args.samples, args.seq_len)
    model.set_attn_implementation("sdpa")
    model.to(args.device)
    device_ids = ids.to(args.device)  # the forwards read their windows from the device; the report moves its own
    outputs: dict[str, list[list[float]]] = {}

    def synchronize() -> None:  # a clock must read finished work, not queued kernels
        if args.device == "cuda":
            torch.cuda.synchronize()

    def body():
        with torch.inference_mode():
            for batch in device_ids.split(args.batch_size):
                model.base_model(input_ids=batch, use_cache=False)
        synchronize()

    def full_model():
        with torch.inference_mode():
            for batch in device_ids.split(args.batch_size):
                model(input_ids=batch, use_cache=False)
        synchronize()

    def report():
        outputs["report"] = analyze.analyze_attention(
            model, input_ids=ids, num_samples=ids.shape[0], seq_len=ids.shape[1], batch_size=args.batch_size,
            progress=False,
        ).rank  # fmt: skip
        synchronize()

    def naive_way():
        outputs["naive"] = naive(model, ids, args.batch_size)[0]
        model.set_attn_implementation("sdpa")

    ways = {"body (floor)": body, "full model": full_model, "report": report}
    if not args.skip_naive and args.device == "cpu":  # the naive way reads the probabilities with numpy, on CPU
        ways["naive"] = naive_way
    load_before = os.getloadavg()[0]
    body(), report()  # warm-up: first-call allocations, kernel selection, the statistics' threads
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    for repeat in range(args.repeats):
        # the body and the report back to back, in turn first, so that a change of load hits both; the rest after
        pair = ["body (floor)", "report"] if repeat % 2 == 0 else ["report", "body (floor)"]
        for name in [*pair, *(name for name in ways if name not in pair)]:
            start, cpu_start = time.perf_counter(), time.process_time()
            ways[name]()
            times[name].append((time.perf_counter() - start, time.process_time() - cpu_start))
    median = {name: tuple(statistics.median(run[i] for run in runs) for i in (0, 1)) for name, runs in times.items()}
    floor_wall, floor_cpu = median["body (floor)"]
    pair_ratios = [
        tuple(report[i] / body[i] for i in (0, 1))
        for report, body in zip(times["report"], times["body (floor)"], strict=True)
    ]
    print(
        f"{args.layers[0]} layers, d=1024, 16 heads, {args.samples} samples x T={args.seq_len}, batch "
        f"{args.batch_size}, fp32, {torch.cuda.get_device_name() if args.device == 'cuda' else 'CPU'}, "
        f"torch {torch.__version__}, torch threads: {torch.get_num_threads()}, median of "
        f"{args.repeats} alternating runs; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(f"{'way':<14}  {'wall s':>7}  {'(min)':>7}  {'CPU s':>7}  {'/ body wall':>11}  {'/ body CPU':>10}")
    for name, (wall, cpu) in median.items():
        fastest = min(run[0] for run in times[name])
        print(
            f"{name:<14}  {wall:>7.2f}  {fastest:>7.2f}  {cpu:>7.2f}  {wall / floor_wall:>10.2f}x  "
            f"{cpu / floor_cpu:>9.2f}x"
        )
    walls = ", ".join(f"{wall:.2f}" for wall, _ in pair_ratios)
    print(
        f"report / body, pair by pair: wall {walls}; median {statistics.median(r[0] for r in pair_ratios):.3f}x wall, "
        f"{statistics.median(r[1] for r in pair_ratios):.3f}x CPU (goal: 1.2x on CPU, issue 12; 2x on a GPU, issue 21)"
    )
    if "naive" in outputs:
        difference = max(
            abs(a - b)
            for x, y in zip(outputs["report"], outputs["naive"], strict=True)
            for a, b in zip(x, y, strict=True)
        )
        print(f"max |mean-rank difference| report vs naive: {difference:.2g}")
    if args.profile:
        profile(model, ids, args, floor_cpu, median["report"][1])


def profile(model, ids, args: argparse.Namespace, floor_cpu: float, report_cpu: float) -> None:
    """Where the report's CPU time beyond the floor goes (medians from `ratio`): each piece's thread CPU time,
    summed over the statistics' threads, in one more run, and the floor's own sdpa attention in one more pass."""
    import torch
    from transformers import AttentionInterface

    import inheritune_hf.analyze as analyze
    import inheritune_hf.analyze.capture as capture
    import inheritune_hf.analyze.stats as stats

    spent: dict[str, float] = {}

    def timed(name: str, function):
        def wrapper(*a, **k):
            start = time.thread_time()
            try:
                return function(*a, **k)
            finally:
                spent[name] = spent.get(name, 0.0) + time.thread_time() - start

        return wrapper

    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
    AttentionInterface.register("sdpa", timed("sdpa attention (in the floor)", sdpa))
    try:
        with torch.inference_mode():
            for batch in ids.split(args.batch_size):
                model.base_model(input_ids=batch, use_cache=False)
    finally:
        AttentionInterface.register("sdpa", sdpa)
    pieces = {
        (stats, "_gram"): "Gram matrices A A^T (fp32, causal halves)",
        (stats, "_krylov_basis"): "Krylov bases (block Lanczos)",
        (stats, "_certified_ranks"): "certificate: Ritz values, bounds (incl. Krylov)",
        (stats, "_ranks_by_eigensolver"): "eigvalsh for the unproved",
        (capture, "attention_mass"): "mass m*",
        (capture, "_cosines"): "Block Influence cosines",
    }
    saved = {(module, name): getattr(module, name) for module, name in [*pieces, (capture, "_eager_attention_for")]}
    for (module, name), label in pieces.items():
        setattr(module, name, timed(label, saved[module, name]))
    capture._eager_attention_for = lambda module: timed(
        "eager attention (the model's own)", saved[capture, "_eager_attention_for"](module)
    )
    try:
        analyze.analyze_attention(
            model, input_ids=ids, num_samples=ids.shape[0], seq_len=ids.shape[1], batch_size=args.batch_size,
            progress=False,
        )  # fmt: skip
    finally:
        for (module, name), function in saved.items():
            setattr(module, name, function)
    floor_attention = spent.pop("sdpa attention (in the floor)", 0.0)
    eager = spent.pop("eager attention (the model's own)", 0.0)
    krylov = spent.pop("Krylov bases (block Lanczos)", 0.0)
    rows = {"eager attention, less the floor's sdpa attention": eager - floor_attention, **spent}
    extra = report_cpu - floor_cpu
    rows["the rest (threads, hooks' copies, Python)"] = extra - sum(rows.values())
    print(f"\nwhere the report's CPU time beyond the floor goes (medians: report {report_cpu:.2f} s, body")
    print(f"{floor_cpu:.2f} s, of which sdpa attention {floor_attention:.2f} s): CPU time of each piece in one more")
    print(f"run, summed over the statistics' threads; the Krylov bases take {krylov:.2f} s of the certificate.")
    print(f"{'piece':<52}  {'CPU s':>6}  {'/ body CPU':>10}")
    for label, seconds in rows.items():
        print(f"{label:<52}  {seconds:>6.2f}  {seconds / floor_cpu:>9.3f}x")
    print(f"{'total beyond the floor':<52}  {extra:>6.2f}  {extra / floor_cpu:>9.3f}x")


def child(args: argparse.Namespace) -> None:
    model, ids = build(args.layers, args.samples, args.seq_len)
    method = {"naive": naive, "inheritune": inheritune}[args.child]
    with PeakMemory() as memory:
        start, cpu_start = time.perf_counter(), time.process_time()
        ranks, stats_seconds = method(model, ids, args.batch_size)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print(
        json.dumps(
            {
                "method": args.child,
                "layers": args.layers,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "stats_seconds": stats_seconds,
                "peak_mib": memory.peak_mib,
                "weights_rss_mib": memory.base_mib,
                "ranks": ranks,
            }
        )
    )


def run_child(method: str, layers: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", method, "--layers", str(layers)]
    command += ["--samples", str(args.samples), "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size)]
    # numpy's OpenBLAS gets one thread: on a loaded 2-core machine its spinning worker threads made every SVD
    # ten times slower, which would flatter the comparison. torch keeps its own thread setting.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        sys.exit(f"{method} at {layers} layers failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, nargs="+", default=[24, 12])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--ratio", action="store_true", help="the report's cost over a plain body forward pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-naive", action="store_true", help="--ratio without the (slow) naive way")
    parser.add_argument("--threads", type=int, default=0, help="--ratio: torch threads (default: torch's own)")
    parser.add_argument("--profile", action="store_true", help="--ratio, then where the report's time goes")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="--ratio: where the model runs")
    parser.add_argument("--child", choices=["naive", "inheritune"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "cuda" and (args.profile or not args.ratio):
        parser.error("--device cuda goes with --ratio (without --profile, which times CPU threads)")
    if args.ratio:
        return ratio(args)
    if args.child:
        args.layers = args.layers[0]
        return child(args)

    import torch

    print(
        f"GPT-2-medium-shaped random model (d=1024, 16 heads), {args.samples} samples x T={args.seq_len}, "
        f"batch {args.batch_size}, fp32, CPU: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    header = (
        f"{'layers':>6}  {'method':<10}  {'wall s':>7}  {'stats s':>7}  {'fwd s':>6}  {'CPU s':>6}  "
        f"{'peak MiB':>8}  {'weights MiB':>11}"
    )
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(header)
    results = {}
    for layers in args.layers:
        for method in ("naive", "inheritune"):
            r = results[layers, method] = run_child(method, layers, args)
            print(
                f"{layers:>6}  {method:<10}  {r['seconds']:>7.1f}  {r['stats_seconds']:>7.1f}  "
                f"{r['seconds'] - r['stats_seconds']:>6.1f}  {r['cpu_seconds']:>6.1f}  {r['peak_mib']:>8.0f}  "
                f"{r['weights_rss_mib']:>11.0f}",
                flush=True,
            )
    print()
    for layers in args.layers:
        slow, fast = results[layers, "naive"], results[layers, "inheritune"]
        diff = max(
            abs(a - b) for x, y in zip(slow["ranks"], fast["ranks"], strict=True) for a, b in zip(x, y, strict=True)
        )
        print(
            f"{layers} layers: speed-up {slow['seconds'] / fast['seconds']:.1f}x end to end "
            f"({slow['cpu_seconds'] / fast['cpu_seconds']:.1f}x in CPU time), "
            f"{slow['stats_seconds'] / fast['stats_seconds']:.1f}x on the statistics; "
            f"peak memory {slow['peak_mib'] / max(fast['peak_mib'], 1):.1f}x lower; "
            f"max |mean-rank difference| {diff:.2g}"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if len(args.layers) > 1:
        deep, shallow = max(args.layers), min(args.layers)
        for method in ("naive", "inheritune"):
            growth = results[deep, method]["peak_mib"] / max(results[shallow, method]["peak_mib"], 1)
            print(f"{method}: peak memory at {deep} layers / at {shallow} layers = {growth:.2f}")


if __name__ == "__main__":
    main()
