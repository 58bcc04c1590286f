"""Benchmark healing by distillation on the tiny CPU setting (embedded corpus, GPT-2-style models of width 64).

From one trained reference, side by side in one run: the training FLOPs (the teacher's forwards included) and
tokens until the validation loss first reaches the reference's (+ tolerance), and the loss at an equal budget (the
FLOPs the paper's rule needed), for

    paper            restart growth, plain loss (Algorithm 1 as published)
    restart+KD       restart growth, distilled from the reference
    continue+KD      continue growth, distilled
    random+KD        the same-size random-init model, distilled (the paper's "KD from scratch" baseline)
    sweep            restart+KD over alpha in {0.25, 0.5, 0.9} x T in {1, 2}

Every Inheritune run trains each round's full schedule (no early stop), so the crossing point is read off the
eval curves (an early stop would end the round exactly there: same steps up to it). Goal: a distilled Inheritune
reaches the reference's loss for at most 0.5x the paper's FLOPs, and ends lower at an equal budget.

    .venv/bin/python benchmarks/bench_distill.py [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import arguments, tiny_gpt2  # noqa: E402

from inheritune_hf.data import embedded_corpus, pack_dataset, train_tokenizer  # noqa: E402
from inheritune_hf.inherit import inherit  # noqa: E402
from inheritune_hf.rounds import run_inheritune  # noqa: E402
from inheritune_hf.settings import InherituneArguments  # noqa: E402
from inheritune_hf.train import train  # noqa: E402


def curve_in_flops(rows: list[dict], folder: Path) -> list[tuple[float, int, float]]:
    """(cumulative FLOPs, cumulative tokens, eval loss) at every evaluation of every round, in order."""
    points = []
    for row in rows:
        flops_before, tokens_before = row["cumulative_flops"] - row["flops"], row["cumulative_tokens"] - row["tokens"]
        per_token = row["flops"] / row["tokens"]
        for point in json.loads((folder / row["eval_curve"]).read_text()):
            points.append(
                (flops_before + per_token * point["tokens"], tokens_before + point["tokens"], point["eval_loss"])
            )
    return points


def summarize(points, target: float) -> dict:
    crossing = next((p for p in points if p[2] <= target), None)
    return {
        "points": points,
        "flops_to_target": crossing[0] if crossing else math.inf,
        "tokens_to_target": crossing[1] if crossing else None,
        "final_loss": points[-1][2],
        "total_flops": points[-1][0],
    }


def loss_at_budget(points, budget: float) -> float:
    """The last evaluated loss within `budget` FLOPs (the run had not spent more by then)."""
    within = [p[2] for p in points if p[0] <= budget * (1 + 1e-9)]
    return within[-1] if within else math.nan


def inheritune_run(reference, data, settings: dict, target: float, **options) -> dict:
    train_blocks, eval_blocks = data
    with tempfile.TemporaryDirectory() as tmp:
        args = InherituneArguments(
            start_layers=settings["start_layers"], reference_loss=settings["reference_loss"],
            tolerance=settings["tolerance"], plot=False, **options,
        )  # fmt: skip
        round_args = arguments(
            Path(tmp) / "run", max_steps=settings["round_steps"], eval_strategy="steps",
            eval_steps=settings["eval_steps"], warmup_steps=10,
        )  # fmt: skip
        result = run_inheritune(reference, train_blocks, eval_blocks, args, round_args)
        outcome = summarize(curve_in_flops(result.rounds, Path(tmp) / "run"), target)
    outcome["layers"] = [row["layers"] for row in result.rounds]
    return outcome


def random_init_run(reference, data, settings: dict, target: float, layers: int, **distillation) -> dict:
    """The same-size random-init model on `rounds` rounds' budget (the paper's baseline), optionally distilled."""
    train_blocks, eval_blocks = data
    model = inherit(reference, layers, random_init=True)
    with tempfile.TemporaryDirectory() as tmp:
        steps = settings["round_steps"] * settings["baseline_rounds"]
        round_args = arguments(
            tmp, max_steps=steps, eval_strategy="steps", eval_steps=settings["eval_steps"], warmup_steps=10
        )
        result = train(model, train_blocks, eval_blocks, round_args, teacher=reference, **distillation)
    per_token = result.flops / result.tokens
    points = [(per_token * p["tokens"], p["tokens"], p["eval_loss"]) for p in result.eval_curve]
    return {**summarize(points, target), "layers": [layers]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, no sweep (a smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--reference-layers", type=int, default=6)
    parser.add_argument("--reference-steps", type=int, default=800)
    parser.add_argument("--round-steps", type=int, default=150)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument(
        "--alpha", type=float, default=0.5, help="alpha of the restart+KD / continue+KD / random+KD runs"
    )
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--schedule", default="linear_decay", choices=["constant", "linear_decay"])
    parser.add_argument("--no-sweep", action="store_true")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    hf_logging.set_verbosity_error()
    started = time.perf_counter()

    vocab, block = 1024, 64
    corpus = embedded_corpus(max_bytes=1_000_000, validation_fraction=0.1)
    tokenizer = train_tokenizer(corpus["train"], vocab_size=vocab)
    data = (
        pack_dataset(corpus["train"], tokenizer, block),
        pack_dataset(corpus["validation"], tokenizer, block).select(range(128)),
    )
    reference = tiny_gpt2(vocab, block, options.reference_layers, 64, seed=1)
    reference_steps = 200 if options.quick else options.reference_steps
    with tempfile.TemporaryDirectory() as tmp:
        reference_loss = train(reference, *data, arguments(tmp, max_steps=reference_steps, warmup_steps=20)).final_loss
    reference.eval()
    settings = {
        "reference_layers": options.reference_layers, "reference_steps": reference_steps,
        "start_layers": options.reference_layers // 2, "round_steps": 50 if options.quick else options.round_steps,
        "eval_steps": 10, "tolerance": options.tolerance, "reference_loss": reference_loss, "baseline_rounds": 2,
        "block": block, "batch": 16, "vocab": vocab,
    }  # fmt: skip
    target = reference_loss + options.tolerance
    print(f"data: {len(data[0])} train / 128 validation blocks of {block} tokens; reference {options.reference_layers}L, "
          f"{reference_steps} steps, val loss {reference_loss:.4f}; target {target:.4f}; {settings['round_steps']} steps a round")  # fmt: skip

    kd = {"distillation_weight": options.alpha, "distillation_temperature": options.temperature,
          "distillation_schedule": options.schedule}  # fmt: skip
    label_kd = f"a={options.alpha:g},T={options.temperature:g},{options.schedule}"
    runs: dict[str, dict] = {}
    runs["paper (restart, plain)"] = inheritune_run(reference, data, settings, target)
    runs[f"restart+KD {label_kd}"] = inheritune_run(reference, data, settings, target, **kd)
    runs[f"continue+KD {label_kd}"] = inheritune_run(
        reference, data, settings, target, growth_strategy="continue", **kd
    )
    depth = runs["paper (restart, plain)"]["layers"][-1]
    runs[f"random {depth}L, plain"] = random_init_run(reference, data, settings, target, depth)
    runs[f"random {depth}L +KD {label_kd}"] = random_init_run(reference, data, settings, target, depth, **kd)
    if not (options.quick or options.no_sweep):
        for alpha in (0.25, 0.5, 0.9):
            for temperature in (1.0, 2.0):
                sweep = {"distillation_weight": alpha, "distillation_temperature": temperature,
                         "distillation_schedule": options.schedule}  # fmt: skip
                runs[f"sweep restart+KD a={alpha:g},T={temperature:g}"] = inheritune_run(
                    reference, data, settings, target, **sweep
                )

    paper = runs["paper (restart, plain)"]
    budget = paper["flops_to_target"] if math.isfinite(paper["flops_to_target"]) else paper["total_flops"]
    print(f"\n== to the reference's loss + {options.tolerance:g} ({target:.4f}); equal budget = {budget:.3g} FLOPs ==")
    print(
        f"{'run':40s}{'layers':>9s}{'FLOPs to target':>17s}{'x paper':>9s}{'tokens':>9s}{'loss @budget':>14s}{'final':>8s}"
    )
    for label, run in runs.items():
        ratio = run["flops_to_target"] / paper["flops_to_target"]
        tokens = "-" if run["tokens_to_target"] is None else str(run["tokens_to_target"])
        layers = "->".join(map(str, run["layers"]))
        print(f"{label:40s}{layers:>9s}{run['flops_to_target']:17.3g}{ratio:9.2f}{tokens:>9s}"
              f"{loss_at_budget(run['points'], budget):14.4f}{run['final_loss']:8.4f}")  # fmt: skip
        run["over_paper_flops"] = ratio
        run["loss_at_budget"] = loss_at_budget(run["points"], budget)
    print(f"\n(total {time.perf_counter() - started:.0f}s, torch threads {options.threads})")
    if options.json:
        options.json.write_text(json.dumps({"settings": settings, "budget": budget, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
