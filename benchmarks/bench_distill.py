"""Benchmark healing by distillation on the tiny CPU setting (embedded corpus, GPT-2-style models of width 64).

From one trained reference, side by side in one run: the training FLOPs (the teacher's forwards included, only
where they ran) and tokens until the validation loss first reaches the reference's (+ tolerance), the loss at an
equal budget (the FLOPs the paper's rule needed), the final loss and the total FLOPs, for

    paper              restart growth, plain loss (Algorithm 1 as published)
    continue           continue growth, plain loss
    sweep              restart + distillation over alpha x T x schedule (constant, linear_decay, until_target)
    continue+KD        continue growth + distillation (--alpha, --temperature), each schedule
    random, random+KD  the same-size random-init model on two rounds' budget, plain and distilled (the paper's
                       "KD from scratch" baseline; constant and linear_decay)

Every Inheritune run trains each round's full schedule (no early stop), so the crossing point is read off the
eval curves (an early stop would end the round exactly there: same steps up to it). 'until_target' distills up to
that crossing and trains plainly after it, so its FLOPs to the target are constant's; it differs after. Goal: a
distilled Inheritune reaches the reference's loss for at most 0.5x the paper's FLOPs, and ends lower at an equal
budget.

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
from inheritune_hf.io import write_json  # noqa: E402
from inheritune_hf.rounds import run_inheritune  # noqa: E402
from inheritune_hf.settings import InherituneArguments  # noqa: E402
from inheritune_hf.train import train  # noqa: E402


def flops_at(tokens: int, flops: float, total_tokens: int, teacher_tokens: int, teacher_parameters: int) -> float:
    """FLOPs spent by the time a round has trained on `tokens` of its `total_tokens`: the student's share grows
    evenly, the teacher's (2 N_teacher per token) only over its first `teacher_tokens` (all of them unless the
    schedule is 'until_target', which stops running the teacher at the crossing)."""
    teacher_flops = 2 * teacher_parameters * teacher_tokens
    return (flops - teacher_flops) * tokens / total_tokens + 2 * teacher_parameters * min(tokens, teacher_tokens)


def curve_in_flops(rows: list[dict], folder: Path, teacher_parameters: int) -> list[tuple[float, int, float]]:
    """(cumulative FLOPs, cumulative tokens, eval loss) at every evaluation of every round, in order."""
    points = []
    for row in rows:
        flops_before, tokens_before = row["cumulative_flops"] - row["flops"], row["cumulative_tokens"] - row["tokens"]
        for point in json.loads((folder / row["eval_curve"]).read_text()):
            spent = flops_at(point["tokens"], row["flops"], row["tokens"], row["teacher_tokens"], teacher_parameters)
            points.append((flops_before + spent, tokens_before + point["tokens"], point["eval_loss"]))
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
        rows = [row.to_dict() for row in result.rounds]
        outcome = summarize(curve_in_flops(rows, Path(tmp) / "run", reference.num_parameters()), target)
    outcome["layers"] = [row.layers for row in result.rounds]
    outcome["teacher_tokens"] = sum(row.teacher_tokens for row in result.rounds)
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
        distilled = InherituneArguments(**distillation).distillation(target=target)
        result = train(model, train_blocks, eval_blocks, round_args, teacher=reference, distillation=distilled)
    spent = [
        flops_at(p["tokens"], result.flops, result.tokens, result.teacher_tokens, reference.num_parameters())
        for p in result.eval_curve
    ]
    points = [(f, p["tokens"], p["eval_loss"]) for f, p in zip(spent, result.eval_curve, strict=True)]
    return {**summarize(points, target), "layers": [layers], "teacher_tokens": result.teacher_tokens}


SCHEDULES = ("constant", "linear_decay", "until_target")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, no sweep (a smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--reference-layers", type=int, default=6)
    parser.add_argument("--reference-steps", type=int, default=800)
    parser.add_argument("--start-layers", type=int, default=None, help="the first round's depth (default L/2)")
    parser.add_argument("--round-steps", type=int, default=150)
    parser.add_argument("--eval-steps", type=int, default=10)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--alpha", type=float, default=0.9, help="alpha of the continue+KD and random+KD runs")
    parser.add_argument("--temperature", type=float, default=2.0, help="T of the continue+KD and random+KD runs")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.25, 0.5, 0.9], help="the sweep's alphas")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0], help="the sweep's T")
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=SCHEDULES)
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--no-random", action="store_true", help="skip the random-init runs")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
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
        "start_layers": options.start_layers or options.reference_layers // 2,
        "round_steps": 50 if options.quick else options.round_steps, "eval_steps": options.eval_steps,
        "tolerance": options.tolerance, "reference_loss": reference_loss, "baseline_rounds": 2,
        "block": block, "batch": 16, "vocab": vocab, "reference_parameters": reference.num_parameters(),
    }  # fmt: skip
    target = reference_loss + options.tolerance
    print(f"data: {len(data[0])} train / 128 validation blocks of {block} tokens; reference {options.reference_layers}L, "
          f"{reference_steps} steps, val loss {reference_loss:.4f}; target {target:.4f}; {settings['round_steps']} steps a "
          f"round, evaluated every {options.eval_steps}", flush=True)  # fmt: skip

    def kd(alpha: float, temperature: float, schedule: str) -> dict:
        return {"distillation_weight": alpha, "distillation_temperature": temperature,
                "distillation_schedule": schedule}  # fmt: skip

    def label(alpha: float, temperature: float, schedule: str) -> str:
        return f"a={alpha:g},T={temperature:g},{schedule}"

    runs: dict[str, dict] = {}

    def record(name: str, run: dict) -> None:
        runs[name] = run
        print(f"  {name}: {run['flops_to_target']:.3g} FLOPs to target, final {run['final_loss']:.4f} "
              f"({time.perf_counter() - started:.0f}s)", flush=True)  # fmt: skip

    schedules = options.schedules[:1] if options.quick else options.schedules
    record("paper (restart, plain)", inheritune_run(reference, data, settings, target))
    record("continue, plain", inheritune_run(reference, data, settings, target, growth_strategy="continue"))
    if not (options.quick or options.no_sweep):
        for schedule in schedules:
            for alpha in options.alphas:
                for temperature in options.temperatures:
                    record(
                        f"restart+KD {label(alpha, temperature, schedule)}",
                        inheritune_run(reference, data, settings, target, **kd(alpha, temperature, schedule)),
                    )
    for schedule in schedules:
        headline = kd(options.alpha, options.temperature, schedule)
        name = label(options.alpha, options.temperature, schedule)
        if options.quick or options.no_sweep:
            record(f"restart+KD {name}", inheritune_run(reference, data, settings, target, **headline))
        record(
            f"continue+KD {name}",
            inheritune_run(reference, data, settings, target, growth_strategy="continue", **headline),
        )
    depth = runs["paper (restart, plain)"]["layers"][-1]
    if not options.no_random:
        record(f"random {depth}L, plain", random_init_run(reference, data, settings, target, depth))
    for schedule in [s for s in schedules if s != "until_target" and not options.no_random]:  # never reached
        headline = kd(options.alpha, options.temperature, schedule)
        name = label(options.alpha, options.temperature, schedule)
        record(f"random {depth}L +KD {name}", random_init_run(reference, data, settings, target, depth, **headline))

    paper = runs["paper (restart, plain)"]
    budget = paper["flops_to_target"] if math.isfinite(paper["flops_to_target"]) else paper["total_flops"]
    print(f"\n== to the reference's loss + {options.tolerance:g} ({target:.4f}); equal budget = {budget:.3g} FLOPs ==")
    print(f"{'run':44s}{'layers':>9s}{'FLOPs to target':>17s}{'x paper':>9s}{'tokens':>9s}{'loss @budget':>14s}"
          f"{'final':>8s}{'total FLOPs':>13s}{'x paper':>9s}")  # fmt: skip
    for name, run in runs.items():
        ratio = run["flops_to_target"] / paper["flops_to_target"]
        tokens = "-" if run["tokens_to_target"] is None else str(run["tokens_to_target"])
        layers = "->".join(map(str, run["layers"]))
        run["over_paper_flops"] = ratio
        run["loss_at_budget"] = loss_at_budget(run["points"], budget)
        total_ratio = run["total_flops"] / paper["total_flops"]
        print(f"{name:44s}{layers:>9s}{run['flops_to_target']:17.3g}{ratio:9.2f}{tokens:>9s}"
              f"{run['loss_at_budget']:14.4f}{run['final_loss']:8.4f}{run['total_flops']:13.3g}{total_ratio:9.2f}")  # fmt: skip
    print(f"\n(total {time.perf_counter() - started:.0f}s, torch threads {options.threads})")
    if options.json:
        write_json(options.json, {"settings": settings, "budget": budget, "runs": runs})


if __name__ == "__main__":
    main()
