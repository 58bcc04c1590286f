"""The recipe end to end: parse a recipe's settings, run its stages in the paper's order, write report.md.

A recipe script (`recipes/gpt2_medium.py`, `recipes/tiny.py`, ...) is a YAML file of settings and a call to
`main`. Settings come from four dataclasses parsed together by `InherituneParser` (an `HfArgumentParser`, the one
every entry point uses): `RecipeArguments`, `InherituneArguments`, `DataArguments` (all in `inheritune_hf.settings`)
and `transformers.TrainingArguments`. A YAML file (the script's own, or `--config FILE`) gives defaults, named
budgets inside it (`budgets: {small: {...}}`, chosen with `--budget`) override them, `--smoke` swaps in tiny shapes
and the embedded corpus (the same code path, a few steps), and any flag overrides all of these. `--plan` prints
what the run would cost (`plan_recipe`) and runs nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from ..errors import InherituneError, for_the_command_line
from ..io import atomic_write_text
from ..loading import load_causal_lm_config
from ..narration import print_narration
from ..parser import InherituneParser
from ..publish import check_repo_id
from ..rounds import check_against_reference
from ..settings import DataArguments, InherituneArguments, RecipeArguments, check_training_arguments
from ..sources import check_source
from ..tracking import ATTENTION_HISTORY_FILE, AttentionTracking, check_trackable
from ..verdict import weak_reference
from .plan import (
    accumulation_for,
    check_recipe,
    format_plan,
    parameter_count,
    plan_recipe,
    processes,
    reference_config,
)
from .report import REPORT_FILE, format_report
from .stages import (
    compared_models,
    diagnose,
    eval_tasks,
    evaluate_models,
    evaluation_folders,
    inheritune_rounds,
    prepare_inputs,
    publish_model,
    push_model,
    train_or_load_reference,
)

#: `--smoke`: the same code path on tiny shapes, the embedded corpus and a few steps, on CPU.
SMOKE_SETTINGS: dict[str, Any] = {
    "reference": None,
    "num_layers": 4,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": None,
    "tokenizer_vocab_size": 512,
    "reference_max_steps": None,
    "tokens_per_step": None,
    "analyze_samples": 4,
    "analyze_seq_len": 32,
    "eval_tasks": "heldout",
    "eval_limit": 8,
    "dataset_name": None,
    "dataset_config_name": None,
    "dataset_revision": None,
    "streaming": False,
    "tokenizer_name": None,
    "corpus_max_bytes": 800_000,
    "block_size": 64,
    "max_steps": 3,
    "warmup_steps": 1,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "eval_strategy": "no",
    "save_strategy": "no",
    "logging_steps": 1,
    "max_eval_blocks": 8,
    "start_layers": None,
    "max_layers": None,
    "bf16": False,
    "tf32": None,
    "torch_compile": False,
    "optim": "adamw_torch",
    "use_cpu": True,
    "report_to": "none",
    "dataloader_num_workers": 0,
}

PARSED_TYPES = (RecipeArguments, InherituneArguments, DataArguments, TrainingArguments)


#: The recipe's other spellings: `--push-to-hub REPO_ID` names the repo to publish to (`hub_repo_id`), where
#: TrainingArguments' own boolean `push_to_hub` would make Trainer push every checkpoint, which a recipe never wants.
RECIPE_ALIASES = {"--push-to-hub": "--hub_repo_id", "--push_to_hub": "--hub_repo_id"}


def recipe_parser() -> InherituneParser:
    """The one parser of a recipe's four dataclasses; the first argument may be the recipe's YAML file."""
    return InherituneParser(
        PARSED_TYPES,
        prog=Path(sys.argv[0]).name or "recipe",
        description="The paper's pipeline: reference, diagnosis, Inheritune, evaluation, Hub-ready model.",
        yaml_positional=True,
        summarized=[TrainingArguments],
        aliases=RECIPE_ALIASES,
    )


def parse_recipe_args(
    argv: Sequence[str] | None = None, default_config: str | Path | None = None
) -> tuple[RecipeArguments, InherituneArguments, DataArguments, TrainingArguments]:
    """Parse a recipe's settings: YAML defaults, then the chosen budget, then `smoke`, then flags.

    The YAML file is the script's own (`default_config`) unless the first argument or `--config FILE` names another.
    `budget`, `smoke` and `plan` are settings like any other (`RecipeArguments`: a flag or a YAML key), read first
    (`InherituneParser.peek`) because they change the settings the flags then override: a budget layers the YAML's
    `budgets: {NAME: {...}}` over it, `smoke` swaps in tiny shapes and the embedded corpus (`SMOKE_SETTINGS`), and
    `plan` runs on the CPU whatever the recipe trains in.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = recipe_parser()
    config, argv = parser.config_file(argv)
    config = config or default_config
    if config is None and not {"-h", "--help", "--help-all"} & set(argv):
        raise InherituneError(
            "Name the recipe: inheritune recipe RECIPE.yaml [--smoke | --plan] [--budget NAME] [--FLAG VALUE ...]."
        )
    settings = parser.read_config(config) if config is not None else {}
    budgets = settings.pop("budgets", {}) or {}
    chosen = parser.peek(argv, settings, ("budget", "smoke", "plan"), source=str(config))

    if chosen["budget"] is not None:
        if chosen["budget"] not in budgets:
            raise InherituneError(
                f"Unknown budget {chosen['budget']!r}; this recipe defines {sorted(budgets) or 'none'}."
            )
        settings.update(budgets[chosen["budget"]])
    if chosen["smoke"]:
        settings.update(SMOKE_SETTINGS)
        settings["output_dir"] = str(Path(settings.get("output_dir", "outputs/recipe")).with_name("smoke"))
    planned_bf16 = settings.get("bf16", False)
    if chosen["plan"]:
        # Planning trains nothing, so the GPU-only precision settings must not stop it on a laptop.
        settings.update({"bf16": False, "tf32": None, "use_cpu": True})
    settings["push_to_hub"] = False  # see RECIPE_ALIASES

    recipe, inheritune_args, data_args, training_args = parser.parse(argv, config=settings, source=str(config))
    check_training_arguments(training_args)
    training_args.push_to_hub = False
    if recipe.plan:  # the plan's memory estimate is for the precision the run will train in, not the laptop's
        training_args.bf16 = bool(planned_bf16)
    if recipe.tokens_per_step:
        training_args.gradient_accumulation_steps = accumulation_for(
            recipe.tokens_per_step, training_args.per_device_train_batch_size, processes(), data_args.block_size
        )
    return recipe, inheritune_args, data_args, training_args


@dataclass
class RecipeResult:
    """Where a recipe run left its artifacts and the comparison it measured."""

    output_dir: Path
    rows: list[dict[str, Any]]
    matched: bool
    report: Path


def run_recipe(
    recipe: RecipeArguments,
    inheritune_args: InherituneArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
) -> RecipeResult:
    """Run the stages (`inheritune_hf.recipe.stages`) under `training_args.output_dir` and return where all went.

    `reference/`, `analysis/`, `inheritune/`, `evaluation/` and `model/` (the Hub-ready folder, pushed with
    `--push-to-hub REPO_ID`), and `report.md`, the comparison table, which is also printed.
    """
    from accelerate import PartialState

    check_recipe(recipe)
    # The depths and the context, against the reference's config (read, or the one stage 1 would build), before
    # any text is read.
    if recipe.reference:
        check_source(recipe.reference, "--reference")
        config = load_causal_lm_config(recipe.reference)
    else:
        config = reference_config(recipe, None, data_args.block_size)
    check_against_reference(config, inheritune_args, data_args)
    if recipe.hub_repo_id:
        check_repo_id(recipe.hub_repo_id)
    if inheritune_args.track_attention_steps:
        check_trackable(training_args)
    state = PartialState()
    out = Path(training_args.output_dir)
    say = print if state.is_main_process else (lambda *a, **k: None)

    # The main process reads, tokenizes and packs first (downloads and the datasets cache are written once), then
    # the others, from its cache where there is one.
    with training_args.main_process_first(desc="tokenizer and data"):
        inputs = prepare_inputs(recipe, data_args)
    tokenizer, train_set, eval_set = inputs.tokenizer, inputs.train_set, inputs.eval_set
    say(f"[data] {len(eval_set)} validation blocks of {data_args.block_size} tokens from {inputs.data_info['source']}")
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    tracking = None
    if inheritune_args.track_attention_steps:  # drawn as the diagnosis draws its samples, from the same text
        seq_len = min(recipe.analyze_seq_len, data_args.block_size)
        samples = inheritune_args.track_attention_samples
        tracking = AttentionTracking.from_dataset(
            eval_set, inheritune_args.track_attention_steps, samples, seq_len, training_args.seed
        )

    # The reference's training evaluates on the blocks the rounds are compared on, so its curve ends at its loss.
    rounds_eval = eval_set
    if inheritune_args.max_eval_blocks is not None:
        rounds_eval = eval_set.select(range(min(inheritune_args.max_eval_blocks, len(eval_set))))
    reference, reference_info = train_or_load_reference(
        recipe,
        tokenizer,
        train_set,
        rounds_eval,
        data_args,
        training_args,
        out,
        overwrite=inheritune_args.overwrite,
        given=inputs.given_reference,
        tracking=tracking,
    )
    where = f" -> {out / 'reference' / 'model'}" if not recipe.reference else ""
    say(f"[1/5 reference] {reference_info['source']}: {parameter_count(reference) / 1e6:.2f}M parameters{where}")

    analysis = None
    if recipe.analyze and state.is_main_process:
        analysis = diagnose(recipe, reference, eval_set, out, training_args.seed)
        say(f"[2/5 analysis] lazy layers {analysis.lazy_layers or 'none'} -> {out / 'analysis'}")
    state.wait_for_everyone()  # the others wait while the main process diagnoses (one forward pass per sample)

    run_dir = out / "inheritune"
    result = inheritune_rounds(
        reference,
        train_set,
        eval_set,
        inheritune_args,
        training_args,
        run_dir,
        tokenizer=tokenizer,
        metadata={"dataset": inputs.data_info["source"], "data": inputs.data_info, "recipe": recipe.name},
        figure=out / "analysis" / "attention_rank.png" if analysis is not None else None,
        reference_curve=reference_info.get("eval_curve"),
        tracking=tracking,
    )
    final = result.rounds[-1]
    say(
        f"[3/5 inheritune] {len(result.rounds)} round(s), final {final.layers} layers, val loss "
        f"{final.val_loss:.4f} vs reference {result.reference_loss:.4f}: "
        f"{'matched' if result.matched else 'not matched'}"
    )
    caveat = weak_reference(result.rows(), reference_info.get("tokens"))
    if result.matched and caveat:
        say(f"[3/5 inheritune] {caveat}")
    if tracking is not None:
        say(
            f"[3/5 attention] rank per layer every {tracking.every_n_steps} steps -> {run_dir / ATTENTION_HISTORY_FILE}"
        )
    rows, models = compared_models(reference, reference_info, result, load_models=state.is_main_process)

    results_by_name: dict[str, Any] = {}
    tasks, include_path = eval_tasks(recipe, tokenizer, eval_set, out)
    if tasks is not None and state.is_main_process:
        results_by_name = evaluate_models(
            models,
            tokenizer,
            tasks,
            out / "evaluation",
            subfolders=evaluation_folders(rows),
            include_path=include_path,
            batch_size=recipe.eval_batch_size,
            limit=recipe.eval_limit,
        )
        named = ", ".join(tasks) if isinstance(tasks, list) else "paper tasks"
        say(f"[4/5 evaluation] {len(rows)} models on {named} -> {out / 'evaluation'}")

    final_results = results_by_name.get(rows[1]["model"])
    if state.is_main_process:
        folder = publish_model(recipe, data_args, run_dir, out / "model", final_results)
        say(f"[5/5 model] Hub-ready folder with its card -> {folder}")
        if recipe.hub_repo_id:
            say(f"[5/5 push] {push_model(recipe, data_args, run_dir, final_results)}")

    text = format_report(
        recipe.name,
        rows,
        results_by_name,
        result.matched,
        analysis=analysis,
        reference_config=reference.config,
        reference_source=reference_info.get("source"),
    )
    report = out / REPORT_FILE
    if state.is_main_process:
        atomic_write_text(report, text)
        print(f"[report] -> {report}\n\n{text}")
    # The others wait for the main process's evaluation and writes, so the launch ends when the run does. Its
    # lm-eval must finish within TrainingArguments' `ddp_timeout` (1800 s by default; raise it for the paper suite).
    state.wait_for_everyone()
    return RecipeResult(output_dir=out, rows=rows, matched=result.matched, report=report)


def launch(argv: Sequence[str] | None = None, default_config: str | Path | None = None) -> int:
    """Parse a recipe's settings (`parse_recipe_args`), then print its plan (`plan`) or run it; errors propagate."""
    parsed = parse_recipe_args(argv, default_config)
    if parsed[0].plan:
        print(format_plan(plan_recipe(*parsed)))
    else:
        run_recipe(*parsed)
    return 0


def main(default_config: str | Path | None = None, argv: Sequence[str] | None = None) -> int:
    """Entry point of every recipe launcher (`recipes/*.py`, `python -m inheritune_hf.recipe RECIPE.yaml`): parse
    (YAML + budget + smoke + flags), run, and report an error as one line with exit code 2."""
    print_narration()
    try:
        return launch(argv, default_config)
    except InherituneError as err:
        print(f"error: {for_the_command_line(str(err))}", file=sys.stderr)
        return 2
