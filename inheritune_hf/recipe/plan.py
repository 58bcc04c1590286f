"""The recipe's plan: what a run will build and cost, before anything is read, trained or written.

Shapes come from configs built on the meta device (no memory, no weights), so the full-size recipes plan in seconds
on a laptop. The batch is counted the paper's way, in tokens per optimizer step, and the gradient accumulation is
chosen to keep it on however many processes `accelerate launch` starts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel, TrainingArguments

from ..architecture import find_decoder_layers, num_layers_of, on_meta_device
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


def meta_causal_lm(config: PretrainedConfig) -> PreTrainedModel:
    """The causal LM a config builds, on the meta device: its shapes and blocks, no memory, no weights."""
    with on_meta_device():
        return AutoModelForCausalLM.from_config(config)


def meta_parameter_count(config: PretrainedConfig) -> int:
    """Parameter count of the model a config builds, on the meta device: no memory, no weights."""
    return parameter_count(meta_causal_lm(config))


def prefix_parameter_counts(model: PreTrainedModel) -> dict[int, int]:
    """Parameter count of `model` keeping its first k blocks, for every k (a meta-device build is enough).

    Algorithm 1's rounds keep prefixes of the reference's blocks, so counting each block once prices every round
    (13 for GPT-2 XL) without building a model per depth.
    """
    blocks = [sum(p.numel() for p in layer.parameters()) for layer in find_decoder_layers(model).layers]
    total = parameter_count(model)
    return {k: total - sum(blocks[k:]) for k in range(len(blocks) + 1)}


#: Dense bf16 peak of an H100 / H200 SXM (989 TFLOP/s): the GPU-hours are stated against it.
PEAK_BF16_FLOPS = 989e12
#: The model FLOPs utilisation the GPU-hours assume where nothing was measured for a run's shape: a stated guess for
#: GPT-2-sized models under Trainer (llm-foundry reports 40-50% for 350M-1B models), not a measurement.
ASSUMED_MFU = 0.40


@dataclass(frozen=True)
class MeasuredMFU:
    """An MFU measured on a GPU for one training shape: the figure, the GPU and versions, and the date."""

    mfu: float
    where: str  # e.g. "one NVIDIA H200, torch 2.11.0+cu130, transformers 5.24.0, benchmarks/bench_gpu_train.py"
    when: str  # the date, YYYY-MM-DD


#: MFU measured by `benchmarks/bench_gpu_train.py` (or `make gpu-check`) through `inheritune_hf.train`, by training
#: shape: (layers, hidden size, block size, micro-batch per device). Empty: nothing has been measured yet, so every
#: run is priced at `ASSUMED_MFU` and `--plan` says so. Add a row only from a measurement, with where and when.
MEASURED_MFU: dict[tuple[int, int, int, int], MeasuredMFU] = {}


def measured_mfu(layers: int | None, hidden: int, block: int, micro_batch: int) -> MeasuredMFU | None:
    """The MFU measured for this training shape, or None where nothing was measured (then `ASSUMED_MFU` holds)."""
    return MEASURED_MFU.get((layers, hidden, block, micro_batch)) if layers else None


#: Bytes per parameter that every process keeps while training: fp32 master weights, fp32 gradients and AdamW's
#: two fp32 moments. Trainer's `bf16` is autocast: the weights stay fp32, and each matmul reads a bf16 copy.
WEIGHT_BYTES, GRADIENT_BYTES, ADAMW_BYTES, BF16_COPY_BYTES = 4, 4, 8, 2
#: Activation bytes one block keeps per token and hidden unit in 16 bits, for a GPT block with a 4h MLP and fused
#: (sdpa / flash) attention, which stores no T x T scores (Korthikanti et al. 2022, "Reducing Activation
#: Recomputation in Large Transformer Models": 34 s b h per layer; their 5 a s^2 b term is the scores').
ACTIVATION_FACTOR = 34
#: The strategies the memory estimate covers, and which states each shards over the processes.
STRATEGIES = {
    "DDP": (),
    "ZeRO-2": ("gradients", "adamw"),
    "FSDP (full shard)": ("weights", "gradients", "adamw", "bf16 copy"),
}


def training_memory(
    config: PretrainedConfig,
    params: int,
    *,
    micro_batch: int,
    seq_len: int,
    devices: int = 1,
    bf16: bool = True,
    strategy: str = "DDP",
    activation_checkpointing: bool = False,
) -> dict[str, float]:
    """Bytes one device holds while training `config`'s model (`params` parameters), part by part.

    Why an estimate: it decides the batch, the process count and the strategy before a GPU is rented. Weights,
    gradients and AdamW states are `params` x 4, 4 and 8 bytes (fp32, as Trainer keeps them under bf16 autocast),
    plus the 2-byte bf16 copy autocast makes; `strategy` shards some of them over `devices` (DDP: none; ZeRO-2:
    gradients and AdamW states; FSDP full shard: all). Activations per block are 34 x tokens x hidden bytes in 16
    bits (doubled in fp32); with activation checkpointing, each block keeps only its input (2 bytes per token and
    hidden unit) and one block's activations live at a time, during its recomputation. The logits add tokens x
    vocabulary x 6 bytes (the 16-bit logits and their fp32 copy for the loss). Allocator fragmentation, CUDA
    context and communication buffers are not counted: leave 10-20% free.
    """
    if strategy not in STRATEGIES:
        raise InherituneError(f"Unknown strategy {strategy!r}; the estimate covers {', '.join(STRATEGIES)}.")
    text = config.get_text_config()
    tokens, hidden, layers = micro_batch * seq_len, text.hidden_size, text.num_hidden_layers
    sharded = STRATEGIES[strategy]

    def share(part: str, nbytes: float) -> float:
        return nbytes / devices if part in sharded else nbytes

    scale = 1 if bf16 else 2
    per_block = ACTIVATION_FACTOR * tokens * hidden * scale
    if activation_checkpointing:
        activations = layers * 2 * tokens * hidden * scale + per_block
    else:
        activations = layers * per_block
    activations += tokens * text.vocab_size * (6 if bf16 else 8)
    parts = {
        "weights": share("weights", WEIGHT_BYTES * params),
        "bf16 copy": share("bf16 copy", BF16_COPY_BYTES * params) if bf16 else 0.0,
        "gradients": share("gradients", GRADIENT_BYTES * params),
        "adamw": share("adamw", ADAMW_BYTES * params),
        "activations": float(activations),
    }
    parts["total"] = sum(parts.values())
    return parts


def gpu_hours(flops: float, mfu: float = ASSUMED_MFU, peak: float = PEAK_BF16_FLOPS) -> float:
    """GPU-hours of `flops` at `mfu` of `peak` FLOP/s: the compute bill, stated against an assumed utilisation."""
    return flops / (peak * mfu) / 3600


def plan_recipe(
    recipe: RecipeArguments,
    inheritune_args: InherituneArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    *,
    devices_for_memory: int = 8,
) -> dict[str, Any]:
    """What a run will cost, before it starts: shapes, tokens per step and per run, compute, GPU-hours and memory.

    Models are built on the meta device, so the full-size recipes plan in seconds on a laptop. Compute is the
    usual 6 x parameters x tokens estimate (the attention T^2 term left out). Tokens per step count
    `WORLD_SIZE` processes (1 unless launched). GPU-hours are stated at `ASSUMED_MFU` of an H100's dense bf16 peak;
    per-device memory (`training_memory`) is for DDP, ZeRO-2 and FSDP on `WORLD_SIZE` devices, or on
    `devices_for_memory` when that is more (a plan on a laptop budgets a node of 8). The worst case sums the compute
    of every round Algorithm 1 may run and takes the largest memory of any run. `rows` are real runs only; past 3
    rounds they show rounds 1, 2 and the last, and `elided` (`elided_rounds`) names the ones between. Returns the
    plan; `format_plan` renders it, as `--plan` prints it.
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

    devices = max(count, devices_for_memory)
    bf16 = bool(training_args.bf16)

    def memory(model_config, params: int) -> dict[str, float]:
        """Per-device totals by strategy, without and with activation checkpointing."""
        return {
            f"{strategy}{', ckpt' if checkpointing else ''}": training_memory(
                model_config,
                params,
                micro_batch=training_args.per_device_train_batch_size,
                seq_len=data_args.block_size,
                devices=devices,
                bf16=bf16,
                strategy=strategy,
                activation_checkpointing=checkpointing,
            )["total"]
            for strategy in STRATEGIES
            for checkpointing in (False, True)
        }

    built = meta_causal_lm(config) if config is not None else None  # the reference once: counts and blocks
    counts = prefix_parameter_counts(built) if built is not None else {}
    reference_blocks = find_decoder_layers(built) if built is not None else None
    sliced: dict[int, PretrainedConfig] = {}

    def sliced_config(k: int) -> PretrainedConfig:
        """Each depth's config once, its depth-dependent settings checked against the reference's build."""
        if k not in sliced:
            sliced[k] = inherit_config(config, k, source_stack=reference_blocks)
        return sliced[k]

    def row(name: str, model_config, layers: int | None, run_steps: int | None) -> dict[str, Any]:
        params = counts.get(layers) if model_config is not None else None
        tokens = per_step * run_steps if run_steps else None
        flops = 6 * params * tokens if params and tokens else None
        hidden = model_config.get_text_config().hidden_size if model_config is not None else 0
        measured = measured_mfu(layers, hidden, data_args.block_size, training_args.per_device_train_batch_size)
        return {
            "model": name,
            "layers": layers,
            "params": params,
            "steps": run_steps,
            "tokens": tokens,
            "flops": flops,
            "mfu": measured.mfu if measured else ASSUMED_MFU,
            "mfu_measured": measured,
            "gpu_hours": gpu_hours(flops, measured.mfu if measured else ASSUMED_MFU) if flops else None,
            "memory": memory(model_config, params) if params else None,
        }

    rows, notes, worst, elided = [], [], {}, None
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
            if number == len(rounds) and len(rounds) > 3:  # round 2, then the last: say what lies between
                elided = elided_rounds(rounds[2:-1], before=len(rows))
            label = "Inheritune round 1" if number == 1 else f"growth round {number}, if not matched yet"
            rows.append(row(label, sliced_config(k), k, steps))
        if len(rounds) > 1:
            notes.append(
                f"Growth adds {inheritune_args.grow_by} layers per round, {len(rounds)} rounds at most, and stops "
                "as soon as the reference's validation loss is matched; each round trains the full schedule."
            )
        if inheritune_args.random_baseline:
            # run_inheritune trains the baseline at the final round's depth (the paper compares equal sizes);
            # the plan budgets the deepest one, as if every round ran.
            baseline = row("random-init baseline (final depth)", sliced_config(depths[-1]), depths[-1], steps)
            rows.append(baseline)
            if len(depths) > 1:
                notes.append(
                    f"The random-init baseline is trained at the final depth: {depths[0]} layers if round 1 matches,"
                    f" up to {depths[-1]} if every round runs (budgeted here)."
                )
        every_round = [row("", sliced_config(k), k, steps) for k in depths]
        every_run = [rows[0], *every_round, *([baseline] if inheritune_args.random_baseline else [])]
        worst["rounds"] = len(depths)
        worst["flops"] = sum(r["flops"] or 0 for r in every_run) or None
        worst["gpu_hours"] = sum(r["gpu_hours"] or 0 for r in every_run) if worst["flops"] else None
        measured = [r["memory"] for r in every_run if r["memory"]]
        worst["memory"] = {key: max(m[key] for m in measured) for key in measured[0]} if measured else None
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
        "elided": elided,
        "notes": notes,
        "devices": devices,
        "bf16": bf16,
        "mfu": ASSUMED_MFU,
        "peak_flops": PEAK_BF16_FLOPS,
        "worst_case": worst,
    }


def elided_rounds(rounds: list[tuple[int, int]], before: int) -> dict[str, Any]:
    """The growth rounds the table leaves out (GPT-2 XL has 13; 3 are shown), and where the table skips them.

    A reader who sees round 2 followed by round 13 should not wonder where the others went: `format_plan` prints
    an ellipsis row that names how many rounds are skipped and their depths, before the row at index `before` of
    the plan's rows. They are still counted in the worst case.
    """
    (first, low), (last, high) = rounds[0], rounds[-1]
    count = len(rounds)
    span = f"round {first} ({low} layers)" if count == 1 else f"rounds {first}-{last} ({low}-{high} layers)"
    return {
        "count": count,
        "rounds": (first, last),
        "layers": (low, high),
        "before": before,
        "label": f"... {count} growth round{'s' if count > 1 else ''} not shown: {span}",
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

    elided = plan.get("elided")
    for index, r in enumerate(plan["rows"]):
        if elided and index == elided["before"]:
            lines.append(f"| {elided['label']} |" + " ... |" * 5)
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
    lines += _format_costs(plan)
    return "\n".join(lines) + "\n"


def _format_costs(plan: dict[str, Any]) -> list[str]:
    """GPU-hours and per-device memory, per run and in the worst case over the growth rounds."""
    worst = plan.get("worst_case") or {}
    measured = [r for r in plan["rows"] if r.get("memory")]
    if not measured:
        return []
    precision = "bf16 autocast over fp32 master weights" if plan["bf16"] else "fp32"
    lines = ["", f"Compute: {_mfu_basis(plan)} Memory per device, in GiB, on "]
    lines[-1] += (
        f"{plan['devices']} devices ({precision}; weights, gradients, AdamW states, activations; ckpt = activation"
        " checkpointing; without allocator and communication overheads)."
    )
    lines.append("")
    reference = plan["rows"][0]
    if reference.get("params"):
        lines[-2] += (
            f" The rounds also keep the reference's fp32 weights ({4 * reference['params'] / 2**30:,.1f} GiB) where it"
            " was trained or loaded."
        )
    keys = list(measured[0]["memory"])
    lines += ["| run | GPU-hours | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    gib = 2**30
    elided = plan.get("elided")
    skipped_before = plan["rows"][elided["before"]] if elided else None
    for r in measured + (
        [{"model": f"worst case ({worst['rounds']} rounds)", **worst}] if worst.get("memory") else []
    ):
        if r is skipped_before:
            lines.append(f"| {elided['label']} |" + " ... |" * (len(keys) + 1))
        hours = "?" if r.get("gpu_hours") is None else f"{r['gpu_hours']:,.0f}"
        lines.append(f"| {r['model']} | {hours} | " + " | ".join(f"{r['memory'][k] / gib:,.1f}" for k in keys) + " |")
    return lines


def _mfu_basis(plan: dict[str, Any]) -> str:
    """What the GPU-hours are priced at: the MFU measured for each run's shape (where and when), else the assumption,
    saying that nothing was measured."""
    peak = f"{plan['peak_flops'] / 1e12:,.0f} TFLOP/s (H100/H200 dense bf16; an A100 is 312)"
    rows = [r for r in plan["rows"] if r.get("flops")]
    measured = {r["mfu_measured"] for r in rows if r.get("mfu_measured")}
    assumed = [r for r in rows if not r.get("mfu_measured")]
    if not measured:
        return (
            f"GPU-hours at an assumed {plan['mfu']:.0%} MFU of {peak}: nothing was measured for these shapes "
            "(MEASURED_MFU in inheritune_hf/recipe/plan.py is empty for them; benchmarks/bench_gpu_train.py measures)."
        )
    said = "; ".join(f"{m.mfu:.1%} measured on {m.where} on {m.when}" for m in sorted(measured, key=lambda m: m.when))
    text = f"GPU-hours at the MFU measured for each run's shape ({said}) of {peak}"
    if assumed:
        text += f"; at an assumed {plan['mfu']:.0%} for {', '.join(r['model'] for r in assumed)} (not measured)"
    return text + "."


def _si(x: float) -> str:
    """A count with its SI suffix, as the paper writes token counts (128K, 9B)."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:g}"
