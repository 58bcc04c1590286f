"""Benchmark: what watching attention collapse costs a recipe's training (issue 15: goal <= 5 % added time).

The demo recipe's reference training (`recipes/tiny.yaml`, its `default` budget unless `--budget`: an 8-layer
GPT-2-style model, d=128, 200 steps of 8 x 128 tokens with evaluation every 50 steps, on CPU) is timed with and
without `AttentionCollapseCallback` probing every `--every` steps (100, as `--track_attention_steps 100` does) on
`--samples` windows of 100 validation tokens (default: the flag's, 32; `--samples 100` is the paper's diagnosis
size), drawn as the recipe draws them. Each variant starts from the
same seeded weights; the runs alternate (plain, tracked, tracked, plain, ...) so a load change on a shared machine
falls on both, and the ratio is of the medians. The tracked run's probes are also timed alone (the sum of the
callback's own seconds), so the added time is seen directly as well as by difference.

    .venv/bin/python benchmarks/bench_track.py                  # 3 pairs, ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_track.py --repeats 1 --budget small   # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, set_seed  # noqa: E402

from inheritune_hf.recipe.plan import reference_config  # noqa: E402
from inheritune_hf.recipe.run import parse_recipe_args  # noqa: E402
from inheritune_hf.recipe.stages import prepare_inputs  # noqa: E402
from inheritune_hf.settings import InherituneArguments  # noqa: E402
from inheritune_hf.tracking import AttentionCollapseCallback, AttentionTracking  # noqa: E402
from inheritune_hf.train import train  # noqa: E402


class TimedCallback(AttentionCollapseCallback):
    """The callback, with the seconds its probes took."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds = 0.0

    def _probe(self, args, state, model):
        start = time.perf_counter()
        super()._probe(args, state, model)
        self.seconds += time.perf_counter() - start


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="default", help="tiny.yaml budget (small, default, paper)")
    parser.add_argument("--every", type=int, default=100, help="probe every N steps (--track_attention_steps)")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs (plain, tracked)")
    parser.add_argument(
        "--samples",
        type=int,
        default=InherituneArguments.track_attention_samples,
        help="validation windows per probe (--track_attention_samples; the paper's diagnosis uses 100)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default torch's; 1 is steadier on a loaded machine)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)

    with tempfile.TemporaryDirectory() as tmp:
        recipe, _, data_args, training_args = parse_recipe_args(
            ["--budget", options.budget, "--output_dir", tmp, "--disable_tqdm", "true", "--logging_steps", "1000"],
            default_config=ROOT / "recipes" / "tiny.yaml",
        )
        inputs = prepare_inputs(recipe, data_args)
        config = reference_config(recipe, inputs.tokenizer, data_args.block_size)
        steps = recipe.reference_max_steps or training_args.max_steps
        seq_len = min(recipe.analyze_seq_len, data_args.block_size)
        tracking = AttentionTracking.from_dataset(
            inputs.eval_set, options.every, options.samples, seq_len, training_args.seed
        )
        print(
            f"reference: {recipe.num_layers} layers, d={recipe.hidden_size}, {steps} steps of "
            f"{training_args.per_device_train_batch_size} x {data_args.block_size} tokens, eval every "
            f"{training_args.eval_steps} steps on {len(inputs.eval_set)} blocks; probe every {options.every} steps on "
            f"{tuple(tracking.samples.shape)} samples; torch threads {torch.get_num_threads()}; "
            f"load {load_average()}",
            flush=True,
        )

        def run(tracked: bool) -> tuple[float, float, int, float]:
            args = dataclasses.replace(training_args, output_dir=str(Path(tmp) / "run"), max_steps=steps)
            set_seed(args.seed)
            model = AutoModelForCausalLM.from_config(config)
            callbacks = [TimedCallback(tracking.samples, every_n_steps=options.every)] if tracked else []
            start = time.perf_counter()
            result = train(
                model, inputs.train_set, inputs.eval_set, args, tokenizer=inputs.tokenizer, callbacks=callbacks
            )
            seconds = time.perf_counter() - start
            probes = len(callbacks[0].history) if tracked else 0
            return seconds, callbacks[0].seconds if tracked else 0.0, probes, result.final_loss

        rows = []
        for repeat in range(options.repeats):
            order = (False, True) if repeat % 2 == 0 else (True, False)
            for tracked in order:
                seconds, probe_seconds, probes, loss = run(tracked)
                rows.append({"tracked": tracked, "seconds": seconds, "probe_seconds": probe_seconds, "probes": probes})
                print(
                    f"  {'tracked' if tracked else 'plain  '}  {seconds:7.1f} s  probes {probes} "
                    f"({probe_seconds:5.1f} s)  val loss {loss:.4f}  load {load_average()}",
                    flush=True,
                )

    # Each pair ran back to back: its ratio sees one load level, which the ratio of medians may not.
    pairs = [rows[i : i + 2] for i in range(0, len(rows), 2)]
    paired = [
        next(r for r in p if r["tracked"])["seconds"] / next(r for r in p if not r["tracked"])["seconds"]
        for p in pairs
    ]
    plain = statistics.median(r["seconds"] for r in rows if not r["tracked"])
    tracked = statistics.median(r["seconds"] for r in rows if r["tracked"])
    probe = statistics.median(r["probe_seconds"] for r in rows if r["tracked"])
    summary = {
        "budget": options.budget,
        "every": options.every,
        "steps": steps,
        "samples": list(tracking.samples.shape),
        "plain_s": plain,
        "tracked_s": tracked,
        "ratio": tracked / plain,
        "paired_ratios": paired,
        "probe_s": probe,
        "probe_share": probe / plain,
        "runs": rows,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load_average()}",
    }
    print(
        f"median: plain {plain:.1f} s, tracked {tracked:.1f} s: ratio {tracked / plain:.3f}; paired ratios "
        f"{', '.join(f'{r:.3f}' for r in paired)} "
        f"(probes alone {probe:.1f} s = {100 * probe / plain:.1f} % of the plain run)"
    )
    if options.json:
        options.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
