"""Benchmark which blocks to keep (issue 12): the paper's prefix against rank, Block Influence and angular distance.

On the demo's tiny setting (`recipes/tiny.yaml`: GPT-2-style, d=128, the embedded corpus, the demo's optimiser and
schedule), for each seed:

1. train an 8-layer reference from scratch (`reference_config` + `train`, as `recipes/tiny.py` does);
2. run `analyze_attention` on it once (the demo's samples: 100 sequences of 100 validation tokens);
3. keep k = 4 blocks by each criterion of `select_layers` ("prefix", "rank", "block_influence", "angular"),
   `inherit(reference, layers=selection)`, and train each the same steps with the same seed, data and schedule;
4. train the same-size random-init model (`inherit(..., random_init=True)`) on the same budget, for scale.

It prints one markdown table: each criterion's blocks, its validation loss before training (step 0) and after, the
paired difference to "prefix" (same reference, same seed), and the reference's loss, all on the same validation
blocks. Each seed is a full replicate (its own reference, analysis samples and data order); with several seeds
the table gives the mean and the range over seeds, and the script says whether the ranking flips between seeds.
Criteria that pick the same blocks as one already trained in this seed are not trained twice: the same blocks,
seed and data give the same run (checked bit for bit on CPU, one thread), and the table says "(= prefix)".

One change to the demo's model: tiny.yaml builds the paper's GPT-2, whose attention logits are scaled by 1 / (the
block's index + 1) (`scale_attn_by_inverse_layer_idx`). A block moved to another index would compute with another
scale and no config field restores it, so `inherit` refuses every non-prefix selection of such a model. The bench
turns that scaling off for its reference (the header says so); `--inverse-layer-scaling` keeps it, and the refused
rows then read "refused by inherit".

    python benchmarks/bench_select.py [--reference-steps 300] [--steps 200] [--seeds 0 1 2] [--json out.json]
    python benchmarks/bench_select.py --smoke   # a 4-layer reference, a few steps: the wiring, in seconds
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, TrainingArguments, set_seed  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inheritune_hf.analyze import SELECTION_CRITERIA, analyze_attention, select_layers  # noqa: E402
from inheritune_hf.errors import ConfigSliceError  # noqa: E402
from inheritune_hf.inherit import inherit  # noqa: E402
from inheritune_hf.io import write_json  # noqa: E402
from inheritune_hf.recipe.plan import reference_config  # noqa: E402
from inheritune_hf.recipe.run import parse_recipe_args  # noqa: E402
from inheritune_hf.recipe.stages import prepare_inputs  # noqa: E402
from inheritune_hf.train import train  # noqa: E402

RANDOM_INIT = "random init"
INVERSE_LAYER_SCALING = "scale_attn_by_inverse_layer_idx"

#: `--smoke`: the same code on a 4-layer reference, a small corpus and a few steps (the test runs this).
SMOKE_RECIPE_FLAGS = [
    "--num_layers", "4", "--hidden_size", "64", "--tokenizer_vocab_size", "512", "--corpus_max_bytes", "300000",
    "--validation_fraction", "0.2", "--block_size", "64", "--analyze_samples", "4", "--analyze_seq_len", "32",
    "--max_eval_blocks", "8", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
    "--warmup_steps", "1", "--eval_steps", "2", "--logging_steps", "1000",
]  # fmt: skip
SMOKE_STEPS = {"reference_steps": 4, "steps": 3}


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The bench's flags, checked before any data is read or model trained (one line naming what to change)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "recipes" / "tiny.yaml", help="the recipe's YAML")
    parser.add_argument("--reference-steps", type=int, default=300, help="training steps of the reference")
    parser.add_argument("--steps", type=int, default=200, help="training steps of every smaller model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one full replicate per seed")
    parser.add_argument("--num-layers", type=int, default=None, help="blocks to keep (default: half the reference)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared machine)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    parser.add_argument(
        "--inverse-layer-scaling",
        action="store_true",
        help="keep the recipe's scale_attn_by_inverse_layer_idx (inherit then refuses non-prefix selections)",
    )
    parser.add_argument("--smoke", action="store_true", help="a 4-layer reference and a few steps (seconds)")
    options = parser.parse_args(argv)
    if options.smoke:
        options.reference_steps, options.steps = SMOKE_STEPS["reference_steps"], SMOKE_STEPS["steps"]
    for name in ("reference_steps", "steps", "threads"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}.")
    if len(set(options.seeds)) != len(options.seeds):
        parser.error(f"--seeds must differ from each other, got {options.seeds}.")
    if not options.config.is_file():
        parser.error(f"--config {options.config} is not a file; pass a recipe YAML such as recipes/tiny.yaml.")
    if options.json is not None and not options.json.parent.is_dir():
        parser.error(f"--json {options.json}: its folder {options.json.parent} does not exist; create it first.")
    return options


@contextlib.contextmanager
def trainer_chatter_to_stderr():
    """Trainer prints its log dicts on stdout; they go to stderr so that stdout is the table alone."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def run_args(training_args: TrainingArguments, out: str, steps: int, seed: int) -> TrainingArguments:
    """The recipe's training arguments for one run: its steps and seed, evaluated before the first step too."""
    return dataclasses.replace(
        training_args, output_dir=out, max_steps=steps, seed=seed, eval_on_start=True, save_strategy="no"
    )


def train_and_measure(model, inputs, eval_blocks, training_args: TrainingArguments, steps: int, seed: int) -> dict:
    """Train `model` with the project's `train` and return its eval curve (step 0 first), start and end losses."""
    with tempfile.TemporaryDirectory() as tmp, trainer_chatter_to_stderr():
        args = run_args(training_args, tmp, steps, seed)
        result = train(model, inputs.train_set, eval_blocks, args, tokenizer=inputs.tokenizer)
    curve = [{"step": point["step"], "eval_loss": point["eval_loss"]} for point in result.eval_curve]
    return {"start_loss": curve[0]["eval_loss"], "end_loss": result.final_loss, "steps": result.steps, "curve": curve}


def train_reference(seed: int, recipe, inputs, eval_blocks, training_args: TrainingArguments, options):
    """The reference M_ref, built and trained as `recipes/tiny.py` trains it (seeded initial weights)."""
    set_seed(seed)
    reference = AutoModelForCausalLM.from_config(reference_config(recipe, inputs.tokenizer, options.block_size))
    measured = train_and_measure(reference, inputs, eval_blocks, training_args, options.reference_steps, seed)
    reference.eval()
    return reference, measured


def compare_selections(
    reference, report, inputs, eval_blocks, training_args: TrainingArguments, keep: int, steps: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Keep `keep` blocks by each criterion, inherit and train each for `steps`; then the random-init model.

    One row per criterion (its blocks, the dropped ones, the reason in words, the losses), then "random init". A
    criterion that picks the blocks an earlier one trained reuses that run (`same_blocks_as`).
    """
    began = time.perf_counter()
    rows: dict[str, dict[str, Any]] = {}
    trained: dict[tuple[int, ...], str] = {}  # blocks -> the criterion whose run trained them
    for criterion in SELECTION_CRITERIA:
        selection = select_layers(report, keep, criterion)
        blocks = tuple(selection)
        row = {"blocks": list(blocks), "dropped": list(selection.dropped), "reason": selection.reason}
        rows[criterion] = row
        if blocks in trained:
            row |= {key: rows[trained[blocks]][key] for key in ("start_loss", "end_loss", "steps", "curve")}
            row["same_blocks_as"] = trained[blocks]
            continue
        try:
            model = inherit(reference, layers=selection)
        except ConfigSliceError as err:  # blocks that would not compute as in the reference at their new index
            row |= {"refused": str(err), "start_loss": math.nan, "end_loss": math.nan, "steps": 0, "curve": []}
            print(f"  seed {seed}: {criterion:15s} blocks {list(blocks)}: refused by inherit", file=sys.stderr)
            continue
        row |= train_and_measure(model, inputs, eval_blocks, training_args, steps, seed)
        row["source_layers"] = model.config.inheritune["source_layers"]  # what inherit actually copied
        trained[blocks] = criterion
        print(f"  seed {seed}: {criterion:15s} blocks {list(blocks)}: {row['start_loss']:.4f} -> "
              f"{row['end_loss']:.4f} ({time.perf_counter() - began:.0f}s)", file=sys.stderr)  # fmt: skip

    set_seed(seed)  # the baseline's initial weights, as `run_inheritune` seeds its rounds
    baseline = inherit(reference, keep, random_init=True)
    rows[RANDOM_INIT] = {"blocks": [], "dropped": [], "reason": "the same-size model, nothing inherited"}
    rows[RANDOM_INIT] |= train_and_measure(baseline, inputs, eval_blocks, training_args, steps, seed)
    return rows


def run_seed(seed: int, recipe, inputs, eval_blocks, training_args: TrainingArguments, options) -> dict[str, Any]:
    """One replicate: the reference, one analysis, every criterion's selection retrained, and the random model."""
    began = time.perf_counter()
    reference, reference_run = train_reference(seed, recipe, inputs, eval_blocks, training_args, options)
    print(f"  seed {seed}: reference {recipe.num_layers}L trained, val loss {reference_run['end_loss']:.4f} "
          f"({time.perf_counter() - began:.0f}s)", file=sys.stderr)  # fmt: skip
    report = analyze_attention(
        reference,
        input_ids=inputs.eval_set[:]["input_ids"].reshape(-1),  # the demo's `diagnose`: the validation tokens
        num_samples=recipe.analyze_samples,
        seq_len=min(recipe.analyze_seq_len, options.block_size),
        seed=seed,
    )
    keep = options.num_layers
    rows = compare_selections(reference, report, inputs, eval_blocks, training_args, keep, options.steps, seed)
    return {
        "seed": seed,
        "reference": reference_run,
        "report": {
            "max_rank": report.max_rank,
            "lazy_layers": report.lazy_layers,
            "block_influence": report.block_influence,
            "angular_distance": report.angular_distance(recipe.num_layers - keep),
        },
        "rows": rows,
        "seconds": time.perf_counter() - began,
    }


def spread(values: Sequence[float], signed: bool = False) -> str:
    """A mean, with the range over seeds where they differ: 4.9511 [4.9402, 4.9630]. Refused runs (NaN) are
    left out and counted; a cell with none left reads "refused by inherit"."""
    measured = [value for value in values if not math.isnan(value)]
    if not measured:
        return "refused by inherit"
    form = "{:+.4f}" if signed else "{:.4f}"
    text = form.format(statistics.fmean(measured))
    if min(measured) != max(measured):
        text += f" [{form.format(min(measured))}, {form.format(max(measured))}]"
    if len(measured) < len(values):
        text += f" ({len(values) - len(measured)} of {len(values)} seeds refused)"
    return text


def measured_criteria(run: dict[str, Any]) -> list[str]:
    """The criteria whose model was inherited and trained in this seed (not refused)."""
    return [c for c in SELECTION_CRITERIA if not math.isnan(run["rows"][c]["end_loss"])]


def format_ranking(run: dict[str, Any]) -> str:
    """One seed's criteria from lowest to highest end loss: `rank < prefix = block_influence = angular`, '=' joining
    criteria that kept the same blocks (one run, the same loss)."""
    rows = run["rows"]
    order = sorted(measured_criteria(run), key=lambda c: (rows[c]["end_loss"], c))
    text = order[0]
    for before, criterion in zip(order, order[1:], strict=False):
        text += (" = " if rows[criterion]["end_loss"] == rows[before]["end_loss"] else " < ") + criterion
    refused = [c for c in SELECTION_CRITERIA if c not in order]
    return text + (f" (refused: {', '.join(refused)})" if refused else "")


def flipped_pairs(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The pairs of criteria whose order by end loss reverses between seeds (a ahead in one seed, b in another)."""
    pairs = []
    for i, a in enumerate(SELECTION_CRITERIA):
        for b in SELECTION_CRITERIA[i + 1 :]:
            differences = [run["rows"][a]["end_loss"] - run["rows"][b]["end_loss"] for run in runs]
            if {math.copysign(1, d) for d in differences if d != 0 and not math.isnan(d)} == {1.0, -1.0}:
                pairs.append((a, b))
    return pairs


def format_table(runs: list[dict[str, Any]], steps: int, num_layers: int) -> str:
    """The markdown table: one row per criterion, then the random-init model; means and ranges over seeds."""
    reference_losses = [run["reference"]["end_loss"] for run in runs]
    header = (
        f"| criterion | blocks kept (of {num_layers}) | val loss, step 0 | val loss, step {steps} | "
        f"step {steps} - prefix (paired) | reference {num_layers}L val loss |"
    )
    lines = [header, "|---|---|---|---|---|---|"]
    for criterion in (*SELECTION_CRITERIA, RANDOM_INIT):
        cells = [run["rows"][criterion] for run in runs]
        blocks = {tuple(row["blocks"]) for row in cells}
        if criterion == RANDOM_INIT:
            kept = "none (random init)"
        elif len(blocks) == 1:
            kept = ", ".join(map(str, cells[0]["blocks"]))
        else:
            kept = " / ".join(
                f"s{run['seed']}: {','.join(map(str, run['rows'][criterion]['blocks']))}" for run in runs
            )
        same = {row.get("same_blocks_as") for row in cells} - {None}
        if same and all(row.get("same_blocks_as") for row in cells):
            kept += f" (= {', '.join(sorted(same))})"
        difference = [
            row["end_loss"] - run["rows"]["prefix"]["end_loss"] for row, run in zip(cells, runs, strict=True)
        ]
        losses = [spread([r[key] for r in cells]) for key in ("start_loss", "end_loss")]
        losses += [spread(difference, signed=True), spread(reference_losses)]
        lines.append(f"| {criterion} | {kept} | {' | '.join(losses)} |")
    return "\n".join(lines)


def without_inverse_layer_scaling(overrides: str | None) -> str | None:
    """The recipe's `config_overrides` ("key=value,...") with GPT-2's attention scaling by 1 / (block index + 1)
    turned off: under it a block moved to another index computes differently, and `inherit` refuses the move."""
    pairs = [pair.split("=", 1) for pair in (overrides or "").split(",") if "=" in pair]
    if not any(key.strip() == INVERSE_LAYER_SCALING and value.strip().lower() == "true" for key, value in pairs):
        return overrides
    return ",".join(f"{key}={'false' if key.strip() == INVERSE_LAYER_SCALING else value}" for key, value in pairs)


def prepare(options: argparse.Namespace):
    """The recipe's settings (its YAML, `--smoke`'s shapes) and its data: the demo's tokenizer, train blocks and
    validation blocks (the first `max_eval_blocks`, as `run_inheritune` takes them). Exits with one line when
    `--num-layers` does not fit the reference, before any data is read."""
    flags = SMOKE_RECIPE_FLAGS if options.smoke else []
    recipe, inheritune_args, data_args, training_args = parse_recipe_args(flags, default_config=options.config)
    overrides = (
        recipe.config_overrides
        if options.inverse_layer_scaling
        else without_inverse_layer_scaling(recipe.config_overrides)
    )
    options.scaling_turned_off = overrides != recipe.config_overrides  # the header says so
    recipe = dataclasses.replace(recipe, config_overrides=overrides)
    keep = recipe.num_layers // 2 if options.num_layers is None else options.num_layers
    if not 1 <= keep < recipe.num_layers:
        sys.exit(f"--num-layers must be in 1..{recipe.num_layers - 1} for a {recipe.num_layers}-layer reference.")
    options.num_layers, options.block_size = keep, data_args.block_size
    with trainer_chatter_to_stderr():
        inputs = prepare_inputs(recipe, data_args)
    eval_blocks = inputs.eval_set
    if inheritune_args.max_eval_blocks is not None:
        eval_blocks = eval_blocks.select(range(min(inheritune_args.max_eval_blocks, len(eval_blocks))))
    return recipe, data_args, training_args, inputs, eval_blocks


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table and each seed's ranking; return (and with `--json`, write) every number."""
    options = parse_options(argv)
    torch.set_num_threads(options.threads)
    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    recipe, data_args, training_args, inputs, eval_blocks = prepare(options)
    keep, layers = options.num_layers, recipe.num_layers
    print(f"data: {len(inputs.train_set)} train / {len(eval_blocks)} validation blocks of {data_args.block_size} "
          f"tokens; reference {layers}L x {recipe.hidden_size}, {options.reference_steps} steps; keep {keep}; "
          f"{options.steps} steps each; seeds {options.seeds}", file=sys.stderr)  # fmt: skip

    runs = [run_seed(seed, recipe, inputs, eval_blocks, training_args, options) for seed in options.seeds]

    batch, block = training_args.per_device_train_batch_size, data_args.block_size
    table = format_table(runs, options.steps, layers)
    flips = flipped_pairs(runs)
    print(f"\nSelection benchmark: {recipe.name} ({layers}L x {recipe.hidden_size}, {options.config.name}), keep "
          f"{keep} blocks; reference {options.reference_steps} steps, every {keep}-layer model {options.steps} steps "
          f"of {batch} x {block} tokens, lr {training_args.learning_rate:g}; validation loss on {len(eval_blocks)} "
          f"blocks; seeds {options.seeds}" + (" (mean [min, max] over seeds)" if len(runs) > 1 else "") +
          ("; attention not scaled by 1 / (block index + 1), unlike the demo's, so that moved blocks compute as "
           "in the reference" if options.scaling_turned_off else ""))  # fmt: skip
    print(f"\n{table}\n")
    for run in runs:
        print(f"seed {run['seed']}: {format_ranking(run)}")
    if len(runs) > 1:
        print("no two criteria change order between seeds" if not flips else
              "the order flips between seeds for " + ", ".join(f"{a} vs {b}" for a, b in flips))  # fmt: skip
    print(f"\n(total {time.perf_counter() - started:.0f}s, torch threads {options.threads}, "
          f"load average {os.getloadavg()[0]:.1f} at the end)")  # fmt: skip

    result = {
        "settings": {
            "config": str(options.config), "smoke": options.smoke, "reference_layers": layers,
            "hidden_size": recipe.hidden_size, "keep": keep, "reference_steps": options.reference_steps,
            "steps": options.steps, "seeds": options.seeds, "batch": batch, "block": block,
            "learning_rate": training_args.learning_rate, "eval_blocks": len(eval_blocks),
            "analyze_samples": recipe.analyze_samples, "threads": options.threads,
            "config_overrides": recipe.config_overrides,
        },
        "runs": runs,
        "table": table,
        "flipped_pairs": flips,
        "seconds": time.perf_counter() - started,
    }  # fmt: skip
    if options.json is not None:
        write_json(options.json, result)
    return result


if __name__ == "__main__":
    main()
