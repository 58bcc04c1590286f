"""The recipe's plan: what a run will build and cost, before anything is read, trained or written.

Shapes come from configs built on the meta device (no memory, no weights), so the full-size recipes plan in seconds
on a laptop. The batch is counted the paper's way, in tokens per optimizer step, and the gradient accumulation is
chosen to keep it on however many processes `accelerate launch` starts.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel, TrainingArguments

from ..architecture import num_layers_of
from ..errors import InherituneError
from ..rounds import round_depths
from ..slicing import inherit_config

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from ..settings import DataArguments, InherituneArguments, RecipeArguments

logger = logging.getLogger(__name__)


def processes() -> int:
    """Processes of this run: `accelerate launch` (and torchrun) set WORLD_SIZE in each of them."""
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


def reference_config(
    recipe: RecipeArguments, tokenizer: PreTrainedTokenizerBase | None, block_size: int
) -> PretrainedConfig:
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


def _apply_overrides(config: PretrainedConfig, overrides: str) -> None:
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


def parameter_count(model: PreTrainedModel) -> int:
    """Every parameter of `model`, tied ones once (`model.parameters()` yields a shared tensor once)."""
    return sum(p.numel() for p in model.parameters())


def meta_parameter_count(config: PretrainedConfig) -> int:
    """Parameter count of the model a config builds, on the meta device: no memory, no weights."""
    import torch

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return parameter_count(model)


def plan_recipe(
    recipe: RecipeArguments,
    inheritune_args: InherituneArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
) -> dict[str, Any]:
    """What a run will cost, before it starts: shapes, tokens per step and per run, and compute.

    Models are built on the meta device, so the full-size recipes plan in seconds on a laptop. Compute is the
    usual 6 x parameters x tokens estimate (the attention T^2 term left out). Tokens per step count
    `WORLD_SIZE` processes (1 unless launched). Returns the plan; `format_plan` renders it, as `--plan` prints it.
    """
    check_recipe(recipe)
    if recipe.reference:
        try:
            config = AutoConfig.from_pretrained(recipe.reference)
        except OSError as err:
            logger.info("Reference config %s not readable here (%s); its size is left out.", recipe.reference, err)
            config = None
    else:
        config = reference_config(recipe, None, data_args.block_size)
    count = processes()
    accumulation = training_args.gradient_accumulation_steps
    if recipe.tokens_per_step:  # as parse_recipe_args sets it, for the processes this plan is for
        accumulation = accumulation_for(
            recipe.tokens_per_step, training_args.per_device_train_batch_size, count, data_args.block_size
        )
    per_step = training_args.per_device_train_batch_size * accumulation * count * data_args.block_size
    steps = training_args.max_steps if training_args.max_steps > 0 else None

    def row(name: str, model_config, layers: int | None, run_steps: int | None) -> dict[str, Any]:
        params = meta_parameter_count(model_config) if model_config is not None else None
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
        "processes": count,
        "tokens_per_step": per_step,
        "batch": (
            training_args.per_device_train_batch_size,
            accumulation,
            count,
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
    """A count with its SI suffix, as the paper writes token counts (128K, 9B)."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:g}"
