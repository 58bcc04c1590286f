"""Recipes: the paper's whole pipeline as one library call, configured by a YAML file and flags.

A recipe script (`recipes/gpt2_medium.py`, `recipes/tiny.py`, ...) is a YAML file of settings and a call to
`main`; all the logic lives here. Stages, each writing under `TrainingArguments.output_dir`:

1. `reference/`: train the reference from scratch, as the paper did, or load `--reference PATH_OR_HUB_ID`.
2. `analysis/`: attention rank and single-column mass of the reference (`analyze_attention`).
3. `inheritune/`: `run_inheritune`: inherit L/2 blocks, train, grow by 2 until the reference's validation loss
   is matched; plus the same-size random-init baseline on the same budget (`random_baseline`).
4. `evaluation/`: lm-eval downstream scores of the reference, the Inheritune model and the baseline.
5. `model/`: the Hub-ready folder of the final model with its model card; pushed with `--push-to-hub REPO_ID`.

`report.md` in the output folder holds the comparison table, which is also printed.

Settings come from four dataclasses parsed together by `InherituneParser` (an `HfArgumentParser`, the one every
entry point uses): `RecipeArguments`, `InherituneArguments`, `DataArguments` (all in `inheritune_hf.settings`)
and `transformers.TrainingArguments`. A YAML file (the script's own, or `--config FILE`) gives defaults,
named budgets inside it (`budgets: {small: {...}}`, chosen with `--budget`) override them, `--smoke` swaps in
tiny shapes and the embedded corpus (the same code path, a few steps), and any flag overrides all of these.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, TrainingArguments

from . import settings as _settings
from .architecture import num_layers_of
from .data import EMBEDDED_CORPUS, causal_lm_datasets, load_text_dataset, train_tokenizer
from .errors import InherituneError
from .loading import check_block_size, load_causal_lm, load_causal_lm_config

if TYPE_CHECKING:
    from .settings import DataArguments, InherituneArguments, RecipeArguments

logger = logging.getLogger(__name__)


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

PARSED_TYPES = (_settings.RecipeArguments, _settings.InherituneArguments, _settings.DataArguments, TrainingArguments)


def parse_recipe_args(
    argv: Sequence[str] | None = None, default_config: str | Path | None = None
) -> tuple[RecipeArguments, InherituneArguments, DataArguments, TrainingArguments]:
    """Parse a recipe's settings: YAML defaults, then the chosen budget, then `--smoke`, then flags.

    The YAML file is the script's own (`default_config`) unless `--config FILE` names another. `--budget`,
    `--smoke` and `--plan` are read first because they change the settings the flags then override.
    """
    from .cli.parser import InherituneParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = InherituneParser(
        PARSED_TYPES,
        prog=Path(sys.argv[0]).name or "recipe",
        description="The paper's pipeline: reference, diagnosis, Inheritune, evaluation, Hub-ready model.",
        summarized=[TrainingArguments],
    )
    config, argv = parser.config_file(argv)
    config = config or default_config
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--budget", default=None)
    pre.add_argument("--smoke", action="store_true")
    pre.add_argument("--plan", action="store_true")
    pre.add_argument("--push-to-hub", "--push_to_hub", dest="push_to_hub", default=None)
    known, rest = pre.parse_known_args(argv)

    settings = parser.read_config(config) if config is not None else {}
    budgets = settings.pop("budgets", {}) or {}
    budget = known.budget or settings.get("budget")
    if budget is not None:
        if budget not in budgets:
            raise InherituneError(f"Unknown budget {budget!r}; this recipe defines {sorted(budgets) or 'none'}.")
        settings.update(budgets[budget])
        settings["budget"] = budget
    if known.smoke:
        settings.update(SMOKE_SETTINGS)
        settings["smoke"] = True
        settings["output_dir"] = str(Path(settings.get("output_dir", "outputs/recipe")).with_name("smoke"))
    if known.plan:
        # Planning trains nothing, so the GPU-only precision settings must not stop it on a laptop.
        settings.update({"plan": True, "bf16": False, "tf32": None, "use_cpu": True})
    # `--push-to-hub REPO_ID` names a repo; TrainingArguments' own boolean `push_to_hub` would make Trainer
    # push every checkpoint, which a recipe never wants.
    settings["push_to_hub"] = False
    if known.push_to_hub:
        settings["hub_repo_id"] = known.push_to_hub

    recipe, inheritune_args, data_args, training_args = parser.parse(rest, config=settings, source=str(config))
    training_args.push_to_hub = False
    if recipe.tokens_per_step:
        training_args.gradient_accumulation_steps = accumulation_for(
            recipe.tokens_per_step, training_args.per_device_train_batch_size, _processes(), data_args.block_size
        )
    return recipe, inheritune_args, data_args, training_args


def _processes() -> int:
    """Processes of this run: `accelerate launch` (and torchrun) set WORLD_SIZE in each of them."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def accumulation_for(tokens_per_step: int, per_device_batch: int, processes: int, block_size: int) -> int:
    """Gradient accumulation that keeps `tokens_per_step` on `processes` devices, as the paper's runs had.

    The paper quotes approximate batches (~394K, ~128K tokens) and trained on 3 GPUs, so an exact split is
    not required: the nearest accumulation is taken when it lands within 10% of the target.
    """
    micro = per_device_batch * processes * block_size
    steps = max(1, round(tokens_per_step / micro))
    if abs(steps * micro - tokens_per_step) > 0.1 * tokens_per_step:
        raise InherituneError(
            f"tokens_per_step {tokens_per_step:,} cannot be reached within 10% with {per_device_batch} sequences x "
            f"{processes} process(es) x {block_size} tokens = {micro:,} per micro-step (nearest: {steps} x {micro:,}"
            f" = {steps * micro:,}). Change per_device_train_batch_size or tokens_per_step."
        )
    if steps * micro != tokens_per_step:
        logger.info("tokens_per_step %s -> %s (%s accumulation steps)", tokens_per_step, steps * micro, steps)
    return steps


@dataclass
class RecipeResult:
    """Where a recipe run left its artifacts and the comparison it measured."""

    output_dir: Path
    rows: list[dict[str, Any]]
    matched: bool
    report: Path


def _tokenizer(recipe: RecipeArguments, data_args: DataArguments):
    """The tokenizer: named, the reference's own, or a byte-level BPE trained on the corpus (seconds).

    Returns the tokenizer and, when it had to read the corpus to train one, the loaded text, so the blocks are
    cut from that same text instead of reading and splitting the corpus a second time.
    """
    if data_args.tokenizer_name:
        return AutoTokenizer.from_pretrained(data_args.tokenizer_name), None
    if recipe.reference:
        return AutoTokenizer.from_pretrained(recipe.reference), None
    raw = load_text_dataset(
        data_args.dataset_name,
        config_name=data_args.dataset_config_name,
        revision=data_args.dataset_revision,
        text_column=data_args.text_column,
        validation_fraction=data_args.validation_fraction,
        corpus_max_files=data_args.corpus_max_files,
        corpus_max_bytes=data_args.corpus_max_bytes,
        seed=data_args.split_seed,
    )
    tokenizer = train_tokenizer(
        raw["train"], vocab_size=recipe.tokenizer_vocab_size, text_column=data_args.text_column
    )
    return tokenizer, raw


def reference_config(recipe: RecipeArguments, tokenizer, block_size: int):
    """The config of a reference trained from scratch: the recipe's shape, any decoder-only model type.

    Without a tokenizer (`plan_recipe`), the vocabulary is `vocab_size` or the size of the BPE the recipe
    would train, and the special-token ids are left unset.
    """
    if tokenizer is None:
        vocab = recipe.vocab_size or -(-recipe.tokenizer_vocab_size // 64) * 64
        bos = eos = pad = None
    else:
        vocab = recipe.vocab_size or -(-len(tokenizer) // 64) * 64  # the paper pads GPT-2's 50257 to 50304
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    sizes = {
        "num_hidden_layers": recipe.num_layers,
        "hidden_size": recipe.hidden_size,
        "num_attention_heads": recipe.num_attention_heads,
        "vocab_size": vocab,
        "max_position_embeddings": block_size,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
    }
    if recipe.num_key_value_heads is not None:
        sizes["num_key_value_heads"] = recipe.num_key_value_heads
    config = AutoConfig.for_model(recipe.model_type)
    if recipe.intermediate_size is not None:
        key = "n_inner" if hasattr(config, "n_inner") else "intermediate_size"
        sizes[key] = recipe.intermediate_size
    sizes = {k: v for k, v in sizes.items() if k != "num_key_value_heads" or hasattr(config, k)}
    config = AutoConfig.for_model(recipe.model_type, **sizes)
    if recipe.config_overrides:
        _apply_overrides(config, recipe.config_overrides)
    return config


def _apply_overrides(config, overrides: str) -> None:
    """`config.update_from_string`, with an error that names the setting and what to do about it."""
    try:
        config.update_from_string(overrides)
    except (ValueError, TypeError) as err:
        raise InherituneError(
            f"config_overrides {overrides!r} does not fit a {config.model_type} config: {err}. Use "
            "'key=value,key=value' with keys the config already has (see its to_dict())."
        ) from err


def check_recipe(recipe: RecipeArguments) -> None:
    """Refuse settings that would fail later, before any data is read or any step is trained."""
    if recipe.reference:
        if recipe.config_overrides:
            logger.info("config_overrides apply to a reference trained from scratch; ignored with --reference.")
        return
    try:
        config = AutoConfig.for_model(recipe.model_type)
    except ValueError as err:
        raise InherituneError(f"model_type {recipe.model_type!r} is not a transformers model type: {err}") from err
    if recipe.config_overrides:
        _apply_overrides(config, recipe.config_overrides)


def _meta_parameters(config) -> int:
    """Parameter count of the model a config builds, on the meta device: no memory, no weights."""
    import torch

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return _parameters(model)


def plan_recipe(
    recipe: RecipeArguments,
    inheritune_args: InherituneArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
) -> dict[str, Any]:
    """What a run will cost, before it starts: shapes, tokens per step and per run, and compute.

    Models are built on the meta device, so the full-size recipes plan in seconds on a laptop. Compute is the
    usual 6 x parameters x tokens estimate (the attention T^2 term left out). Tokens per step count
    `WORLD_SIZE` processes (1 unless launched). Returns the plan; `main` prints it for `--plan`.
    """
    from .inherit import inherit_config
    from .rounds import round_depths

    check_recipe(recipe)
    if recipe.reference:
        try:
            config = AutoConfig.from_pretrained(recipe.reference)
        except OSError as err:
            logger.info("Reference config %s not readable here (%s); its size is left out.", recipe.reference, err)
            config = None
    else:
        config = reference_config(recipe, None, data_args.block_size)
    processes = _processes()
    accumulation = training_args.gradient_accumulation_steps
    if recipe.tokens_per_step:  # as parse_recipe_args sets it, for the processes this plan is for
        accumulation = accumulation_for(
            recipe.tokens_per_step, training_args.per_device_train_batch_size, processes, data_args.block_size
        )
    per_step = training_args.per_device_train_batch_size * accumulation * processes * data_args.block_size
    steps = training_args.max_steps if training_args.max_steps > 0 else None

    def row(name: str, model_config, layers: int | None, run_steps: int | None) -> dict[str, Any]:
        params = _meta_parameters(model_config) if model_config is not None else None
        tokens = per_step * run_steps if run_steps else None
        flops = 6 * params * tokens if params and tokens else None
        return {
            "model": name,
            "layers": layers,
            "params": params,
            "steps": run_steps,
            "tokens": tokens,
            "flops": flops,
        }

    rows, notes = [], []
    if config is None:
        notes.append(f"The reference {recipe.reference} is not readable here (offline?), so its sizes are unknown.")
    else:
        depth = num_layers_of(config)
        if recipe.reference:
            rows.append(row(f"reference ({recipe.reference}, given)", config, depth, None))
        else:
            rows.append(row("reference (trained from scratch)", config, depth, recipe.reference_max_steps or steps))
        depths = round_depths(
            config, inheritune_args.start_layers, inheritune_args.grow_by, inheritune_args.max_layers
        )
        rounds = list(enumerate(depths, start=1))
        shown = rounds if len(rounds) <= 3 else [rounds[0], rounds[1], rounds[-1]]
        for number, k in shown:
            label = "Inheritune round 1" if number == 1 else f"growth round {number}, if not matched yet"
            rows.append(row(label, inherit_config(config, k), k, steps))
        if len(rounds) > 1:
            notes.append(
                f"Growth adds {inheritune_args.grow_by} layers per round, {len(rounds)} rounds at most, and stops "
                "as soon as the reference's validation loss is matched; each round trains the full schedule."
            )
        if inheritune_args.random_baseline:
            rows.append(row("random-init baseline", inherit_config(config, depths[0]), depths[0], steps))
    return {
        "name": recipe.name,
        "processes": processes,
        "tokens_per_step": per_step,
        "batch": (
            training_args.per_device_train_batch_size,
            accumulation,
            processes,
            data_args.block_size,
        ),
        "epochs": None if steps else training_args.num_train_epochs,
        "rows": rows,
        "notes": notes,
    }


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as a Markdown table, as `--plan` prints it."""
    batch = " x ".join(str(x) for x in plan["batch"])
    lines = [
        f"# {plan['name']}: plan",
        "",
        f"Tokens per step: {batch} (per device x accumulation x processes x block) = {plan['tokens_per_step']:,}.",
    ]
    if plan["epochs"]:
        lines.append(f"Steps: {plan['epochs']:g} epochs of the training data (the count depends on the data).")
    lines += ["", "| run | layers | params | steps | tokens | ~FLOPs (6ND) |", "|---|---|---|---|---|---|"]

    def num(x, fmt):
        return "?" if x is None else fmt(x)

    for r in plan["rows"]:
        cells = [
            r["model"],
            num(r["layers"], str),
            num(r["params"], lambda p: f"{p / 1e6:,.1f}M"),
            num(r["steps"], lambda s: f"{s:,}"),
            num(r["tokens"], _si),
            num(r["flops"], lambda f: f"{f:.2e}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + plan["notes"] if plan["notes"] else []
    return "\n".join(lines) + "\n"


def _si(x: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:g}"


def _stage_reference(
    recipe, tokenizer, train_set, eval_set, data_args, training_args, out: Path, overwrite: bool, given=None
):
    """Stage 1: the given reference (`given`, loaded and checked before the data), or train one from scratch.

    A reference this folder already holds is reused only when it was trained with the same config, training
    settings and data (a resumed or repeated run); otherwise it is retrained with `overwrite`, or refused.
    """
    from accelerate import PartialState

    from .fingerprint import config_fingerprint, dataset_fingerprint, settings_differences, training_fingerprint
    from .io import jsonable, read_json, write_json
    from .train import train

    if recipe.reference:
        return given if given is not None else load_causal_lm(recipe.reference), {"source": recipe.reference}
    folder = out / "reference"
    final = folder / "model"
    config = reference_config(recipe, tokenizer, data_args.block_size)
    steps = recipe.reference_max_steps or training_args.max_steps
    args = dataclasses.replace(training_args, output_dir=str(folder), max_steps=steps)
    settings = jsonable(
        {
            "config": config_fingerprint(config),
            "training": training_fingerprint(args),
            "train_data": dataset_fingerprint(train_set),
            "eval_data": dataset_fingerprint(eval_set),
        }
    )
    if (final / "config.json").is_file():
        record = folder / "reference.json"  # written last: without it the reference is unfinished
        info = read_json(record) if record.is_file() else {}
        changed = settings_differences(info.get("settings", {}), settings)
        if not changed:
            return load_causal_lm(final), info
        if not overwrite:
            raise InherituneError(
                f"{folder} holds a reference trained with other settings ({'; '.join(changed[:4])}). Pass "
                "--overwrite true to retrain it, or choose another --output_dir."
            )
        state = PartialState()
        if state.is_main_process:
            shutil.rmtree(folder)
        state.wait_for_everyone()
    model = AutoModelForCausalLM.from_config(config)
    result = train(model, train_set, eval_set, args, tokenizer=tokenizer)
    model.config._name_or_path = f"{recipe.name}-reference-{recipe.num_layers}L"
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    info = {
        "source": "trained from scratch",
        "layers": recipe.num_layers,
        "steps": result.steps,
        "tokens": result.tokens,
        "final_loss": result.final_loss,
        "eval_curve": result.eval_curve,
        "settings": settings,
    }
    write_json(folder / "reference.json", info)
    return model, info


def _stage_analysis(recipe, reference, eval_set, out: Path, seed: int):
    """Stage 2: which of the reference's layers are lazy (attention rank, single-column mass)."""
    from .analyze import analyze_attention

    folder = out / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    seq_len = min(recipe.analyze_seq_len, len(eval_set[0]["input_ids"]))
    report = analyze_attention(
        reference,
        input_ids=eval_set[:]["input_ids"].reshape(-1),
        num_samples=recipe.analyze_samples,
        seq_len=seq_len,
        seed=seed,
    )
    report.to_json(folder / "report.json")
    report.to_csv(folder / "report.csv")
    report.plot(folder / "attention_rank.png")
    return report


def _eval_tasks(recipe, tokenizer, eval_set, out: Path) -> tuple[Any, str | None]:
    """The tasks to score: the paper's suite, named lm-eval tasks, or offline tasks from held-out text."""
    from .evaluate import PAPER_TASKS, write_heldout_tasks

    choice = recipe.eval_tasks.strip()
    if choice == "none":
        return None, None
    if choice == "paper":
        return PAPER_TASKS, None
    if choice == "heldout":
        texts = tokenizer.batch_decode(eval_set[:400]["input_ids"], skip_special_tokens=True)
        folder = write_heldout_tasks(texts, out / "evaluation" / "tasks")
        return ["heldout_ppl", "heldout_mc"], str(folder)
    return [name.strip() for name in choice.split(",") if name.strip()], None


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return "" if value is None else str(value)


def _report(recipe, rows, results_by_name, matched, reference, reference_info, analysis, out: Path) -> Path:
    """Write report.md: the comparison table (layers, params, val loss, tokens, downstream scores)."""
    metrics = []
    for results in results_by_name.values():
        for row in results.rows if results else []:
            key = (row.task, row.metric)
            if key not in metrics:
                metrics.append(key)
    header = ["model", "layers", "params", "val loss", "train tokens"] + [f"{t} {m}" for t, m in metrics]
    lines = [f"# {recipe.name}: Inheritune vs. its reference and the random-init baseline", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        results = results_by_name.get(row["model"])
        scores = []
        for task, metric in metrics:
            try:
                scores.append(_format(results.get(task, metric).value) if results else "")
            except (KeyError, ValueError):
                scores.append("")
        cells = [row["model"], row["layers"], f"{row['params'] / 1e6:.2f}M", row["val_loss"], row["tokens"]]
        lines.append("| " + " | ".join(_format(c) for c in cells + scores) + " |")
    verdict = "matched" if matched else "did NOT match"
    lines += ["", f"Inheritune {verdict} the reference's validation loss."]
    if analysis is not None:
        lazy = analysis.lazy_layers
        lines += [
            "",
            f"Attention diagnosis of the reference: lazy (rank-1) layers {lazy or 'none'} of {len(analysis.max_rank)};"
            f" {100 * analysis.rank_one_fraction:.0f}% of heads near rank 1. See `analysis/attention_rank.png`.",
        ]
        for key, suggestion in analysis.suggest_num_layers(reference.config).items():
            lines.append(f"- suggested start ({key}): {suggestion.num_layers} layers: {suggestion.reason}")
    lines += [
        "",
        f"Reference: {reference_info.get('source')}.",
        "Figures: `analysis/attention_rank.png`, `inheritune/loss_curves.png`. Model folder with its card: `model/`.",
    ]
    from .io import atomic_write_text

    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def run_recipe(
    recipe: RecipeArguments,
    inheritune_args: InherituneArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
) -> RecipeResult:
    """Run the recipe's stages (see the module docstring) and return where everything went."""
    from accelerate import PartialState

    from .evaluate import evaluate_downstream
    from .publish import check_repo_id, publish_run
    from .train import run_inheritune

    check_recipe(recipe)
    if recipe.hub_repo_id:
        check_repo_id(recipe.hub_repo_id)
    state = PartialState()
    out = Path(training_args.output_dir)
    say = print if state.is_main_process else (lambda *a, **k: None)

    # A given reference is checked before anything is written: its kind and context from the config, then its
    # weights (safetensors only), then the tokenizer on a sample of the data against its embeddings.
    given, vocab_size = None, None
    if recipe.reference:
        check_block_size(load_causal_lm_config(recipe.reference), data_args.block_size)
    tokenizer, text = _tokenizer(recipe, data_args)
    if recipe.reference:
        given = load_causal_lm(recipe.reference)
        vocab_size = given.get_input_embeddings().num_embeddings
    train_set, eval_set, data_info = causal_lm_datasets(data_args, tokenizer, source=text, vocab_size=vocab_size)
    if text is not None:
        data_info["source"] = data_args.dataset_name or EMBEDDED_CORPUS
    say(f"[data] {len(eval_set)} validation blocks of {data_args.block_size} tokens from {data_info['source']}")
    out.mkdir(parents=True, exist_ok=True)

    reference, reference_info = _stage_reference(
        recipe, tokenizer, train_set, eval_set, data_args, training_args, out, inheritune_args.overwrite, given
    )
    say(f"[1/5 reference] {reference_info['source']}: {_parameters(reference) / 1e6:.2f}M parameters")

    analysis = None
    if recipe.analyze and state.is_main_process:
        analysis = _stage_analysis(recipe, reference, eval_set, out, training_args.seed)
        say(f"[2/5 analysis] lazy layers {analysis.lazy_layers or 'none'} -> {out / 'analysis'}")

    run_dir = out / "inheritune"
    result = run_inheritune(
        reference,
        train_set,
        eval_set,
        inheritune_args,
        dataclasses.replace(training_args, output_dir=str(run_dir)),
        tokenizer=tokenizer,
        metadata={"dataset": data_info["source"], "data": data_info, "recipe": recipe.name},
    )
    rounds = json.loads((run_dir / "rounds.json").read_text())
    grown = [r for r in rounds if r.get("kind", "inheritune") == "inheritune"]
    baseline = [r for r in rounds if r.get("kind") == "random_baseline"]
    matched = bool(grown and grown[-1].get("matched"))
    say(
        f"[3/5 inheritune] {len(grown)} round(s), final {grown[-1]['layers']} layers, val loss "
        f"{grown[-1]['val_loss']:.4f} vs reference {result.reference_loss:.4f}: {'matched' if matched else 'not matched'}"
    )
    if analysis is not None:
        shutil.copy(out / "analysis" / "attention_rank.png", run_dir / "attention_rank.png")

    depth = reference.config.get_text_config().num_hidden_layers
    rows = [
        {
            "model": f"reference ({depth}L)",
            "layers": depth,
            "params": _parameters(reference),
            "val_loss": result.reference_loss,
            "tokens": reference_info.get("tokens"),
            "_model": reference,
        }
    ]
    for kind, row in [("inheritune", grown[-1])] + [("baseline", b) for b in baseline[-1:]]:
        model = load_causal_lm(run_dir / row["checkpoint"])
        label = "Inheritune" if kind == "inheritune" else "random init (same size)"
        rows.append(
            {
                "model": f"{label} ({row['layers']}L)",
                "layers": row["layers"],
                "params": _parameters(model),
                "val_loss": row["val_loss"],
                "tokens": row.get("cumulative_tokens", row.get("tokens")),
                "_model": model,
            }
        )

    results_by_name: dict[str, Any] = {}
    tasks, include_path = _eval_tasks(recipe, tokenizer, eval_set, out)
    if tasks is not None and state.is_main_process:
        # lm-eval warns once per request when a context is truncated to the model's window; one summary is enough.
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        for row in rows:
            results = evaluate_downstream(
                row["_model"],
                tokenizer,
                tasks,
                batch_size=recipe.eval_batch_size,
                limit=recipe.eval_limit,
                include_path=include_path,
            )
            results.save(out / "evaluation" / row["model"].split(" (")[0].replace(" ", "_").lower())
            results_by_name[row["model"]] = results
        say(f"[4/5 evaluation] {len(rows)} models on {', '.join(tasks) if isinstance(tasks, list) else 'paper tasks'}")
    for row in rows:
        row.pop("_model")

    final_results = results_by_name.get(rows[1]["model"])
    if state.is_main_process:
        folder = publish_run(
            run_dir,
            recipe.hub_repo_id or f"local/{recipe.name}-inheritune",
            results=final_results,
            dry_run=out / "model",
            overwrite=True,
            base_model=recipe.reference,
            datasets=data_args.dataset_name,
        )
        say(f"[5/5 model] Hub-ready folder with its card -> {folder}")
        if recipe.hub_repo_id:
            commit = publish_run(
                run_dir,
                recipe.hub_repo_id,
                results=final_results,
                private=recipe.private,
                base_model=recipe.reference,
                datasets=data_args.dataset_name,
            )
            say(f"[5/5 push] {commit}")

    report = _report(recipe, rows, results_by_name, matched, reference, reference_info, analysis, out)
    if state.is_main_process:
        print("\n" + report.read_text())
    return RecipeResult(output_dir=out, rows=rows, matched=matched, report=report)


def main(default_config: str | Path | None = None, argv: Sequence[str] | None = None) -> int:
    """Entry point of a recipe script: parse (YAML + budget + --smoke + flags), run, report errors clearly."""
    try:
        parsed = parse_recipe_args(argv, default_config)
        if parsed[0].plan:
            print(format_plan(plan_recipe(*parsed)))
        else:
            run_recipe(*parsed)
    except InherituneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def __getattr__(name: str):
    """`RecipeArguments` moved to `inheritune_hf.settings`; the old import works, with a warning, until 0.3."""
    if name in ("RecipeArguments", "InherituneArguments", "DataArguments"):
        import warnings

        warnings.warn(
            f"inheritune_hf.recipe.{name} moved to inheritune_hf.settings; the old import goes away in 0.3.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_settings, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
