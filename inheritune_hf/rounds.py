"""The Inheritune loop (Algorithm 1) as a resumable run on disk.

`run_inheritune` measures the reference's validation loss, then runs rounds: inherit l blocks, train,
compare, grow, until a round matches the target or reaches `max_layers`. Its output folder:

    output_dir/
      run.json                 settings, reference and data fingerprints (a resume must match them)
      rounds.json              the table: one row per round (and the random baseline, if asked), with the
                               tokens and training FLOPs spent (the teacher's forwards included when distilling)
      round-1-12L/             one round: Trainer checkpoints (checkpoint-N/), then
        model/                 the trained model (save_pretrained, safetensors), written atomically
        eval_curve.json        [{"step", "tokens", "eval_loss"}], from step 0 (the model before training)
      baseline-16L/            the same-size random-init model, same layout
      loss_curves.png          reference, rounds and baseline against training tokens
      attention_history.json   with track_attention_steps N: each stage's attention rank and mass every N steps,
      attention_history.png    and MaxRank per layer against training steps (`tracking`)

A killed run is resumed with `resume=True`: finished rounds are read back from rounds.json, the unfinished
round continues from its last Trainer checkpoint (model, optimizer, scheduler, RNG and data position).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from accelerate import PartialState
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from .architecture import check_causal_lm, num_layers_of
from .errors import TrainingError
from .figures import plot_loss_curves  # noqa: F401  (public here before figures.py: still importable from rounds)
from .fingerprint import (
    config_fingerprint,  # noqa: F401  (public here before fingerprint.py: still importable from rounds)
    dataset_fingerprint,
    model_fingerprint,
    settings_differences,
    training_fingerprint,
)
from .inherit import grow, inherit
from .io import check_output_dir, jsonable, read_json, replace_dir, write_json
from .loading import check_block_size, load_causal_lm
from .narration import narrate
from .settings import DataArguments, InherituneArguments, check_distillation, check_training_arguments
from .slicing import nearest_valid_num_layers, valid_num_layers
from .tracking import ATTENTION_HISTORY_FILE, AttentionTracking, check_trackable
from .train import check_training_inputs, evaluate_loss, train

logger = logging.getLogger(__name__)


def _narrate(message: str, *args: Any) -> None:
    narrate(logger, message, *args)


RUN_FILE = "run.json"
ROUNDS_FILE = "rounds.json"
FIGURE_FILE = "loss_curves.png"

# InherituneArguments that do not change the result, so a resume may differ in them.
_FREE_KEYS = ("reference_model", "resume", "overwrite", "plot", "track_attention_steps", "track_attention_samples")
_DISTILLATION_KEYS = ("distillation_weight", "distillation_temperature", "distillation_schedule")


@dataclass
class InherituneResult:
    """The outcome of `run_inheritune`: the rounds table, the final model, and whether it matched."""

    model: PreTrainedModel = field(repr=False)
    rounds: list[dict[str, Any]]
    reference_loss: float
    target_loss: float
    matched: bool
    baseline: dict[str, Any] | None
    output_dir: Path


# ---------------------------------------------------------------------------------------------------------------
# Fingerprints: what a resumed run must share with the run that wrote the folder
# ---------------------------------------------------------------------------------------------------------------


def _run_config(reference, train_dataset, eval_dataset, args: InherituneArguments, training_args) -> dict[str, Any]:
    inheritune = {k: v for k, v in dataclasses.asdict(args).items() if k not in _FREE_KEYS}
    if not args.distillation_weight:
        # Without distillation its temperature and schedule change nothing, and a folder written before they
        # existed (which records none of them) must stay resumable.
        for key in _DISTILLATION_KEYS:
            inheritune.pop(key)
    return jsonable(
        {
            "inheritune": inheritune,
            "training": training_fingerprint(training_args),
            "reference": model_fingerprint(reference),
            "train_data": dataset_fingerprint(train_dataset),
            "eval_data": dataset_fingerprint(eval_dataset),
        }
    )


# ---------------------------------------------------------------------------------------------------------------
# Files (written by the main process only)
# ---------------------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError) as err:
        raise TrainingError(f"Cannot read {path} to resume: {err}. Start a new run with overwrite.") from err


def _prepare_output(out: Path, config: dict, args: InherituneArguments, state: PartialState) -> list[dict]:
    """Check the output folder (and, on resume, that it was made with `config`); return the rounds done."""
    run_file = out / RUN_FILE
    if args.resume and run_file.exists():
        saved = _read_json(run_file)
        changed = settings_differences(saved.get("config", {}), config)
        if changed:
            raise TrainingError(
                f"Cannot resume {out}: it was made with different settings, reference or data: "
                + "; ".join(changed[:8])
                + ". Resume with the original settings, or start a new run (another output_dir, or overwrite)."
            )
        return _read_json(out / ROUNDS_FILE) if (out / ROUNDS_FILE).exists() else []
    if args.resume:
        check_resumable(out)
    if not args.resume:
        check_output_dir(out, overwrite=args.overwrite)
    state.wait_for_everyone()  # every process has checked before the main one writes
    if state.is_main_process:
        if out.exists() and args.overwrite:
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()
    return []


def _save_model(result, directory: Path, state: PartialState) -> None:
    """`Trainer.save_model` into a temporary sibling, renamed into place: a killed save leaves no half model."""
    tmp = directory.with_name(f".{directory.name}.tmp")
    if state.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    state.wait_for_everyone()
    result.trainer.save_model(str(tmp))  # gathers FSDP / DeepSpeed shards; writes on the main process
    state.wait_for_everyone()
    if state.is_main_process:
        replace_dir(tmp, directory)
    state.wait_for_everyone()


save_trained_model = _save_model  # public: the recipe saves its reference the same way, once, gathered


# ---------------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------------


def _train_round(
    name: str,
    build_model,
    reference: PreTrainedModel,
    out: Path,
    train_dataset,
    eval_dataset,
    args: InherituneArguments,
    training_args: TrainingArguments,
    target: float,
    tokenizer,
    callbacks,
    state: PartialState,
    schedule: dict[str, Any] | None = None,
    tracking: AttentionTracking | None = None,
    stage: str = "",
):
    """Build (seeded, so a resumed run builds the same model) and train one round in `out / name`.

    `schedule` overrides training arguments for this round (a growth round's peak learning rate and warmup).
    With `args.distillation_weight` > 0 the `reference` is the teacher ('until_target': until the round first
    evaluates at the match threshold, target + tolerance). With `tracking`, the round's attention
    history is recorded as `stage` and written to the run folder.
    """
    directory = out / name
    set_seed(training_args.seed)
    model = build_model()
    resume = get_last_checkpoint(str(directory)) if args.resume and directory.is_dir() else None
    if resume is not None:
        _narrate("%s: resuming at %s", name, Path(resume).name)
    # eval_on_start: the curve starts at step 0, the model as inherited (or grown, or initialised) before training,
    # so the figure shows what inheriting bought; a resumed round keeps that point in its checkpoint's log history.
    round_args = dataclasses.replace(training_args, output_dir=str(directory), eval_on_start=True, **(schedule or {}))
    result = train(
        model,
        train_dataset,
        eval_dataset,
        round_args,
        target_loss=target + args.tolerance if args.stop_at_target else None,
        tokenizer=tokenizer,
        callbacks=[*callbacks, *([tracking.callback()] if tracking is not None else [])],
        resume_from_checkpoint=resume,
        teacher=reference,
        distillation_weight=args.distillation_weight,
        distillation_temperature=args.distillation_temperature,
        distillation_schedule=args.distillation_schedule,
        distillation_target=target + args.tolerance,
    )
    _save_model(result, directory / "model", state)
    if state.is_main_process:
        write_json(directory / "eval_curve.json", result.eval_curve)
    if tracking is not None:
        tracking.record(stage, result.trainer)
        tracking.write(out, plot=args.plot)
    return model, result


def round_depths(
    config, start_layers: int | None = None, grow_by: int = 2, max_layers: int | None = None
) -> list[int]:
    """The depth of every round Algorithm 1 may run: L/2 (or `start_layers`), then `grow_by` more each round up to
    `max_layers` (default L), the last round capped there.

    Each depth is one the architecture's layer pattern allows (`valid_num_layers`; Gemma 4 insists that the last
    layer attends fully): the paper's L/2 and every growth step move to the nearest allowed depth, the steps
    upwards. An explicit `start_layers` the pattern does not allow is refused with the allowed ones.
    """
    depth = num_layers_of(config)
    if start_layers is not None and not 1 <= start_layers <= depth:
        raise TrainingError(f"start_layers={start_layers} is outside 1..{depth}, the reference's depth.")
    valid = valid_num_layers(config)
    if start_layers is not None and start_layers not in valid:
        raise TrainingError(
            f"start_layers={start_layers} cuts the reference's layer pattern where its config class does not allow "
            f"it; choose one of {valid} (nearest: {nearest_valid_num_layers(config, start_layers)})."
        )
    start = start_layers if start_layers is not None else nearest_valid_num_layers(config, max(1, depth // 2))
    stop = max_layers if max_layers is not None else depth
    if not start <= stop <= depth:
        raise TrainingError(
            f"max_layers={stop} must lie between start_layers={start} and the reference's depth {depth}: "
            "Inheritune cannot grow beyond the reference."
        )
    depths = [start]
    while True:
        above = [k for k in valid if depths[-1] < k <= stop]
        if not above:
            return depths
        depths.append(next((k for k in above if k >= depths[-1] + grow_by), above[-1]))


def check_against_reference(config, args: InherituneArguments, data_args: DataArguments | None = None) -> list[int]:
    """The checks that need the reference's config, run right after it is read and before any text is tokenized:
    the round depths (`start_layers`, `max_layers` within the reference's depth and its layer pattern) and the
    block size within its context. Returns the depths."""
    depths = round_depths(config, args.start_layers, args.grow_by, args.max_layers)
    if data_args is not None:
        check_block_size(config, data_args.block_size)
    return depths


def check_resumable(output_dir: str | Path) -> Path:
    """Refuse `--resume` where there is nothing to resume (no run.json), before the data is read: a mistyped
    output_dir must not tokenize a corpus and then fail, nor start a week's run afresh."""
    out = Path(output_dir)
    if (out / RUN_FILE).is_file():
        return out
    if out.is_dir() and any(out.iterdir()):
        raise TrainingError(f"Cannot resume {out}: it has no {RUN_FILE}, so it is not an Inheritune run.")
    raise TrainingError(f"Nothing to resume in {out}: it has no {RUN_FILE}. Drop --resume to start a new run.")


def run_inheritune(
    reference: PreTrainedModel,
    train_dataset: datasets.Dataset | datasets.IterableDataset,
    eval_dataset: datasets.Dataset,
    args: InherituneArguments,
    training_args: TrainingArguments,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    metadata: dict[str, Any] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    tracking: AttentionTracking | None = None,
    reference_curve: Sequence[dict[str, Any]] | None = None,
) -> InherituneResult:
    """Algorithm 1 of Inheritune: inherit L/2 blocks, train, and grow by 2 until the reference's loss is matched.

    The reference's validation loss is measured on `eval_dataset` (or taken from `args.reference_loss`); a round
    matches when its final validation loss is <= target + `args.tolerance`. Rounds grow from `args.start_layers`
    (default L/2) by `args.grow_by` up to `args.max_layers` (default L), with `args.growth_strategy`. Every round
    trains with `training_args` (the full schedule each round, as in the paper; growth rounds take
    `args.growth_lr_scale` and `args.growth_warmup_steps` when set), in
    `training_args.output_dir/round-<i>-<layers>L`. See the module docstring for the folder layout.

    All checks (the reference is a causal LM, layer counts, target, tokenizer, block size, data, output folder,
    resume settings) run before anything is written or trained. `metadata` (e.g. the corpus fingerprint) is
    recorded in run.json, and so is `reference_curve`, the reference's own training curve (`[{"step", "tokens",
    "eval_loss"}]`, as `train` returns it) when the caller trained it: loss_curves.png draws it beside the rounds.

    With `args.track_attention_steps` N > 0, every round (and the baseline) is watched by an
    `AttentionCollapseCallback` every N steps on samples drawn once from `eval_dataset` (seeded by
    `training_args.seed`), or on those of `tracking`, whose stages (e.g. the recipe's reference) come first in
    `attention_history.json`.
    """
    check_training_arguments(training_args)
    check_causal_lm(reference)
    state = PartialState()
    out = Path(training_args.output_dir)
    depths = round_depths(reference.config, args.start_layers, args.grow_by, args.max_layers)
    if args.max_eval_blocks is not None and not isinstance(eval_dataset, datasets.IterableDataset):
        eval_dataset = eval_dataset.select(range(min(args.max_eval_blocks, len(eval_dataset))))
    elif args.max_eval_blocks is not None:
        eval_dataset = eval_dataset.take(args.max_eval_blocks)
    check_training_inputs(reference, train_dataset, eval_dataset, tokenizer)
    check_distillation(
        args.distillation_weight, args.distillation_temperature, args.distillation_schedule,
        evaluates=training_args.eval_strategy != "no",
    )  # fmt: skip
    if args.track_attention_steps or tracking is not None:
        check_trackable(training_args)

    config = _run_config(reference, train_dataset, eval_dataset, args, training_args)
    done = _prepare_output(out, config, args, state)
    if args.track_attention_steps and tracking is None:
        seq_len = min(100, len(next(iter(eval_dataset))["input_ids"]))  # the paper's T = 100, or whole blocks
        tracking = AttentionTracking.from_dataset(
            eval_dataset, args.track_attention_steps, args.track_attention_samples, seq_len, training_args.seed
        )
    if tracking is not None:
        tracking.load(out / ATTENTION_HISTORY_FILE)  # the rounds an interrupted run finished
    previous = _read_json(out / RUN_FILE) if (out / RUN_FILE).exists() else {}
    reference_curve = list(reference_curve) if reference_curve else previous.get("reference_curve")

    reference_loss = args.reference_loss
    if reference_loss is None:
        reference_loss = previous.get("reference_loss")
    if reference_loss is None:
        _narrate("reference: measuring its validation loss")
        reference_loss = evaluate_loss(
            reference, eval_dataset, dataclasses.replace(training_args, output_dir=str(out))
        )
    target = args.target(reference_loss)
    _narrate(
        "reference: validation loss %.4f; a round matches at %.4f or below; rounds at %s layers at most",
        reference_loss,
        target + args.tolerance,
        ", ".join(map(str, depths)),
    )
    if state.is_main_process:
        run = {
            "config": config,
            "reference_loss": reference_loss,
            "target_loss": target,
            "metadata": metadata or {},
            "reference_curve": reference_curve,
        }
        write_json(out / RUN_FILE, run)

    rows = [r for r in done if r["kind"] == "inheritune"]
    baseline = next((r for r in done if r["kind"] == "random_baseline"), None)

    def record(row: dict) -> None:
        done.append(row)
        if state.is_main_process:
            write_json(out / ROUNDS_FILE, done)

    common = (reference, out, train_dataset, eval_dataset, args, training_args, target, tokenizer, callbacks, state)
    model, layers, index = None, depths[0], 1
    while True:
        name = f"round-{index}-{layers}L"
        row = next((r for r in rows if r["round"] == index), None)
        if row is None:
            # Growth reads the previous round's model back from its saved folder, not from memory: the same
            # path whether or not the run was resumed, and a full model even when FSDP or DeepSpeed sharded the
            # one in memory. It is loaded before the round's seed is set, so every path builds the same model.
            previous = load_causal_lm(out / rows[-1]["checkpoint"]) if rows else None

            def build(previous=previous, new=layers - (rows[-1]["layers"] if rows else 0)):
                if previous is None:
                    return inherit(reference, depths[0], reinit=args.reinit)
                return grow(previous, reference, new, args.growth_strategy, reinit=args.reinit)

            _narrate(
                "%s: %d layers, %s",
                name,
                layers,
                "inherited from the reference's first blocks"
                if not rows
                else f"grown by {args.growth_strategy} from round {index - 1}",
            )
            schedule = None
            if rows:  # a growth round: its own peak learning rate and warmup, when asked
                schedule = {"learning_rate": training_args.learning_rate * args.growth_lr_scale}
                if args.growth_warmup_steps is not None:
                    schedule["warmup_steps"] = args.growth_warmup_steps
            model, result = _train_round(
                name, build, *common, schedule=schedule, tracking=tracking, stage=f"round_{index}"
            )
            tokens_before = rows[-1]["cumulative_tokens"] if rows else 0
            row = {
                "kind": "inheritune",
                "round": index,
                "layers": layers,
                "strategy": "inherit" if index == 1 else args.growth_strategy,
                "source_layers": (getattr(model.config, "inheritune", None) or {}).get("source_layers"),
                "steps": result.steps,
                "tokens": result.tokens,
                "cumulative_tokens": tokens_before + result.tokens,
                "flops": result.flops,
                "cumulative_flops": (rows[-1].get("cumulative_flops", math.nan) if rows else 0.0) + result.flops,
                "distillation_weight": args.distillation_weight,
                "teacher_tokens": result.teacher_tokens,
                "train_ce": result.distillation_log.get("distill_ce"),
                "train_kl": result.distillation_log.get("distill_kl"),
                "val_loss": result.final_loss,
                "reference_val_loss": reference_loss,
                "target_loss": target,
                "matched": result.final_loss <= target + args.tolerance,
                "checkpoint": f"{name}/model",
                "eval_curve": f"{name}/eval_curve.json",
            }
            rows.append(row)
            record(row)
            _narrate(
                "%s: validation loss %.4f against %.4f: %s",
                name,
                row["val_loss"],
                target,
                "matched" if row["matched"] else "not matched",
            )
        else:
            model = None  # finished in an earlier process
        if row["matched"] or index == len(depths):
            break
        layers, index = depths[index], index + 1

    if model is None:
        model = load_causal_lm(out / rows[-1]["checkpoint"])

    if args.random_baseline and baseline is None:
        name = f"baseline-{layers}L"
        _narrate("%s: the same-size random-init baseline, %d layers, on one round's budget", name, layers)
        _, result = _train_round(
            name, lambda: inherit(reference, layers, random_init=True), *common, tracking=tracking, stage="baseline"
        )
        baseline = {
            "kind": "random_baseline",
            "round": None,
            "layers": layers,
            "strategy": "random_init",
            "source_layers": None,
            "steps": result.steps,
            "tokens": result.tokens,
            "cumulative_tokens": result.tokens,
            "flops": result.flops,
            "cumulative_flops": result.flops,
            "distillation_weight": args.distillation_weight,
            "teacher_tokens": result.teacher_tokens,
            "train_ce": result.distillation_log.get("distill_ce"),
            "train_kl": result.distillation_log.get("distill_kl"),
            "val_loss": result.final_loss,
            "reference_val_loss": reference_loss,
            "target_loss": target,
            "matched": result.final_loss <= target + args.tolerance,
            "checkpoint": f"{name}/model",
            "eval_curve": f"{name}/eval_curve.json",
        }
        record(baseline)

    if args.plot and state.is_main_process:
        # the config's name: what from_pretrained read, or what a caller named an in-memory model
        name = reference.config.name_or_path or reference.name_or_path or type(reference).__name__
        if Path(name).is_absolute():  # a local folder: its last two parts, not the whole path
            name = "/".join(Path(name).parts[-2:])
        label = f"reference ({num_layers_of(reference.config)} layers)"
        plot_loss_curves(
            done,
            reference_loss,
            out / FIGURE_FILE,
            target,
            reference_curve=reference_curve,
            reference_label=label,
            title=f"Inheritune from {name}: validation loss against training tokens",
        )
    state.wait_for_everyone()
    return InherituneResult(
        model=model,
        rounds=rows,
        reference_loss=reference_loss,
        target_loss=target,
        matched=bool(rows[-1]["matched"]),
        baseline=baseline,
        output_dir=out,
    )
