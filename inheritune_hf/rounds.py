"""The Inheritune loop (Algorithm 1) as a resumable run on disk.

`run_inheritune` measures the reference's validation loss, then runs rounds: inherit l blocks, train,
compare, grow, until a round matches the target or reaches `max_layers`. Its output folder:

    output_dir/
      run.json                 settings, reference and data fingerprints (a resume must match them)
      rounds.json              the table: one `RoundRecord` per round (and the random baseline, if asked), with the
                               tokens and training FLOPs spent (the teacher's forwards included when distilling)
      round-1-12L/             one round: Trainer checkpoints (checkpoint-N/), then
        model/                 the trained model (save_pretrained, safetensors), written atomically
        eval_curve.json        [{"step", "tokens", "eval_loss"}], from step 0 (the model before training)
      baseline-16L/            the same-size random-init model, same layout
      loss_curves.png          reference, rounds and baseline against training tokens
      attention_history.json   with track_attention_steps N: each stage's attention rank and mass every N steps,
      attention_history.png    and MaxRank per layer against training steps (`tracking`)

The loop reads as the paper's Algorithm 1 in `run_inheritune`: `_start_run` (every check, the folder),
`_measure_reference` (the target), `_inheritune_round` per depth until one matches, `_random_baseline`, `_plot`;
the stages share one `_Run` (inputs, folder, target, the table so far).

A killed run is resumed with `resume=True`: finished rounds are read back from rounds.json, the unfinished
round continues from its last Trainer checkpoint (model, optimizer, scheduler, RNG and data position).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Callable, Sequence
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
from .train import TrainResult, check_training_inputs, evaluate_loss, train

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
class RoundRecord:
    """One row of rounds.json: a round of Algorithm 1 (`kind` 'inheritune') or the random baseline.

    The one type both are written as (`to_dict`, the JSON row, keys in this order) and read back as on resume
    (`from_dict`), the way peft's configs round-trip. Tokens and FLOPs are training's, the teacher's forwards included
    when distilling; `cumulative_*` add up the rounds so far (the baseline counts only its own); `checkpoint` and
    `eval_curve` are paths inside the run folder.
    """

    kind: str  # "inheritune" or "random_baseline"
    round: int | None  # 1, 2, ... (None for the baseline)
    layers: int
    strategy: str  # "inherit" (round 1), the growth strategy, or "random_init"
    source_layers: list[int] | None  # the reference's blocks the model was sliced from (None for the baseline)
    steps: int
    tokens: int
    cumulative_tokens: int
    flops: float
    cumulative_flops: float
    distillation_weight: float
    teacher_tokens: int
    train_ce: float | None  # the last logged distill_ce / distill_kl (None without distillation)
    train_kl: float | None
    val_loss: float
    reference_val_loss: float
    target_loss: float
    matched: bool
    checkpoint: str
    eval_curve: str

    def to_dict(self) -> dict[str, Any]:
        """The rounds.json row."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> RoundRecord:
        """A rounds.json row read back; a key this version does not know means another version wrote the folder."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown, missing = sorted(set(row) - set(names)), [name for name in names if name not in row]
        if unknown or missing:
            raise TrainingError(
                f"A row of {ROUNDS_FILE} does not fit this version (unknown {unknown}, missing {missing}). "
                "Resume it with the version that wrote it, or start a new run with overwrite."
            )
        return cls(**row)


@dataclass
class InherituneResult:
    """The outcome of `run_inheritune`: the rounds table, the final model, and whether it matched."""

    model: PreTrainedModel = field(repr=False)
    rounds: list[RoundRecord]
    reference_loss: float
    target_loss: float
    matched: bool
    baseline: RoundRecord | None
    output_dir: Path

    def rows(self) -> list[dict[str, Any]]:
        """rounds.json's rows: the rounds, then the baseline (what `verdict.weak_reference` reads)."""
        return [row.to_dict() for row in (*self.rounds, *([self.baseline] if self.baseline else []))]


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


def _prepare_output(out: Path, config: dict, args: InherituneArguments, state: PartialState) -> list[RoundRecord]:
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
        rows = _read_json(out / ROUNDS_FILE) if (out / ROUNDS_FILE).exists() else []
        return [RoundRecord.from_dict(row) for row in rows]
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


@dataclass
class _Run:
    """What every stage of one `run_inheritune` shares: its inputs, its folder, its target and its table so far."""

    reference: PreTrainedModel
    train_dataset: datasets.Dataset | datasets.IterableDataset
    eval_dataset: datasets.Dataset
    args: InherituneArguments
    training_args: TrainingArguments
    tokenizer: PreTrainedTokenizerBase | None
    callbacks: Sequence[TrainerCallback]
    tracking: AttentionTracking | None
    state: PartialState
    out: Path
    config: dict[str, Any]  # run.json's fingerprints (`_run_config`), which a resume must match
    depths: list[int]
    records: list[RoundRecord]  # rounds.json: the rounds (and the baseline) in the order they finished
    reference_loss: float = math.nan
    target: float = math.nan

    @property
    def threshold(self) -> float:
        """The validation loss at or below which a round matches: target + tolerance."""
        return self.target + self.args.tolerance

    @property
    def rounds(self) -> list[RoundRecord]:
        return [r for r in self.records if r.kind == "inheritune"]

    @property
    def baseline(self) -> RoundRecord | None:
        return next((r for r in self.records if r.kind == "random_baseline"), None)

    def record(self, row: RoundRecord) -> None:
        """Add a finished round to the table and rewrite rounds.json: what a resume reads back."""
        self.records.append(row)
        if self.state.is_main_process:
            write_json(self.out / ROUNDS_FILE, [r.to_dict() for r in self.records])


def _start_run(
    reference: PreTrainedModel,
    train_dataset: datasets.Dataset | datasets.IterableDataset,
    eval_dataset: datasets.Dataset,
    args: InherituneArguments,
    training_args: TrainingArguments,
    tokenizer: PreTrainedTokenizerBase | None,
    callbacks: Sequence[TrainerCallback],
    tracking: AttentionTracking | None,
) -> _Run:
    """Every check, before anything is written; then the output folder (and, on resume, the rounds it holds)."""
    check_training_arguments(training_args)
    check_causal_lm(reference)
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

    state, out = PartialState(), Path(training_args.output_dir)
    config = _run_config(reference, train_dataset, eval_dataset, args, training_args)
    records = _prepare_output(out, config, args, state)
    if args.track_attention_steps and tracking is None:
        seq_len = min(100, len(next(iter(eval_dataset))["input_ids"]))  # the paper's T = 100, or whole blocks
        tracking = AttentionTracking.from_dataset(
            eval_dataset, args.track_attention_steps, args.track_attention_samples, seq_len, training_args.seed
        )
    if tracking is not None:
        tracking.load(out / ATTENTION_HISTORY_FILE)  # the rounds an interrupted run finished
    return _Run(
        reference, train_dataset, eval_dataset, args, training_args, tokenizer, callbacks, tracking, state, out,
        config, depths, records,
    )  # fmt: skip


def _measure_reference(
    run: _Run, metadata: dict[str, Any] | None, reference_curve: Sequence[dict] | None
) -> list[dict] | None:
    """The reference's validation loss (given, read back on resume, or measured) and the target; writes run.json.

    Returns the reference's own training curve: the one given, or the one an earlier process recorded."""
    previous = _read_json(run.out / RUN_FILE) if (run.out / RUN_FILE).exists() else {}
    reference_curve = list(reference_curve) if reference_curve else previous.get("reference_curve")
    reference_loss = run.args.reference_loss
    if reference_loss is None:
        reference_loss = previous.get("reference_loss")
    if reference_loss is None:
        _narrate("reference: measuring its validation loss")
        reference_loss = evaluate_loss(
            run.reference, run.eval_dataset, dataclasses.replace(run.training_args, output_dir=str(run.out))
        )
    run.reference_loss, run.target = reference_loss, run.args.target(reference_loss)
    _narrate(
        "reference: validation loss %.4f; a round matches at %.4f or below; rounds at %s layers at most",
        reference_loss,
        run.threshold,
        ", ".join(map(str, run.depths)),
    )
    if run.state.is_main_process:
        run_file = {
            "config": run.config,
            "reference_loss": reference_loss,
            "target_loss": run.target,
            "metadata": metadata or {},
            "reference_curve": reference_curve,
        }
        write_json(run.out / RUN_FILE, run_file)
    return reference_curve


def _train_round(
    run: _Run,
    name: str,
    build_model: Callable[[], PreTrainedModel],
    stage: str,
    schedule: dict[str, Any] | None = None,
) -> tuple[PreTrainedModel, TrainResult]:
    """Build (seeded, so a resumed run builds the same model) and train one round in `run.out / name`.

    `schedule` overrides training arguments for this round (a growth round's peak learning rate and warmup). With
    distillation the reference is the teacher ('until_target': until the round first evaluates at the match
    threshold). With tracking, the round's attention history is recorded as `stage` and written to the run folder.
    """
    directory = run.out / name
    set_seed(run.training_args.seed)
    model = build_model()
    resume = get_last_checkpoint(str(directory)) if run.args.resume and directory.is_dir() else None
    if resume is not None:
        _narrate("%s: resuming at %s", name, Path(resume).name)
    # eval_on_start: the curve starts at step 0, the model as inherited (or grown, or initialised) before training,
    # so the figure shows what inheriting bought; a resumed round keeps that point in its checkpoint's log history.
    round_args = dataclasses.replace(
        run.training_args, output_dir=str(directory), eval_on_start=True, **(schedule or {})
    )
    tracking = [run.tracking.callback()] if run.tracking is not None else []
    result = train(
        model,
        run.train_dataset,
        run.eval_dataset,
        round_args,
        target_loss=run.threshold if run.args.stop_at_target else None,
        tokenizer=run.tokenizer,
        callbacks=[*run.callbacks, *tracking],
        resume_from_checkpoint=resume,
        teacher=run.reference,
        distillation=run.args.distillation(target=run.threshold),
    )
    _save_model(result, directory / "model", run.state)
    if run.state.is_main_process:
        write_json(directory / "eval_curve.json", result.eval_curve)
    if run.tracking is not None:
        run.tracking.record(stage, result.trainer)
        run.tracking.write(run.out, plot=run.args.plot)
    return model, result


def _record(
    run: _Run, name: str, layers: int, model: PreTrainedModel, result: TrainResult, index: int | None = None
) -> RoundRecord:
    """The rounds.json row of round `index` (None: the random baseline), counting on from the round before it."""
    before = run.rounds[-1] if index is not None and index > 1 else None
    lineage = getattr(model.config, "inheritune", None) or {}
    strategy = "random_init" if index is None else "inherit" if index == 1 else run.args.growth_strategy
    row = RoundRecord(
        kind="random_baseline" if index is None else "inheritune",
        round=index,
        layers=layers,
        strategy=strategy,
        source_layers=None if index is None else lineage.get("source_layers"),
        steps=result.steps,
        tokens=result.tokens,
        cumulative_tokens=(before.cumulative_tokens if before else 0) + result.tokens,
        flops=result.flops,
        cumulative_flops=(before.cumulative_flops if before else 0.0) + result.flops,
        distillation_weight=run.args.distillation_weight,
        teacher_tokens=result.teacher_tokens,
        train_ce=result.distillation_log.get("distill_ce"),
        train_kl=result.distillation_log.get("distill_kl"),
        val_loss=result.final_loss,
        reference_val_loss=run.reference_loss,
        target_loss=run.target,
        matched=result.final_loss <= run.threshold,
        checkpoint=f"{name}/model",
        eval_curve=f"{name}/eval_curve.json",
    )
    run.record(row)
    return row


def _inheritune_round(run: _Run, index: int, layers: int) -> tuple[PreTrainedModel, RoundRecord]:
    """Round `index` of Algorithm 1: inherit `layers` blocks (round 1) or grow the previous round's model to
    `layers`, train it, and record it."""
    name, rounds = f"round-{index}-{layers}L", run.rounds
    before = rounds[-1] if rounds else None
    # Growth reads the previous round's model back from its saved folder, not from memory: the same path whether
    # or not the run was resumed, and a full model even when FSDP or DeepSpeed sharded the one in memory. It is
    # loaded before the round's seed is set, so every path builds the same model.
    previous = load_causal_lm(run.out / before.checkpoint) if before else None

    def build() -> PreTrainedModel:
        if previous is None:
            return inherit(run.reference, layers, reinit=run.args.reinit)
        return grow(previous, run.reference, layers - before.layers, run.args.growth_strategy, reinit=run.args.reinit)

    how = (
        f"grown by {run.args.growth_strategy} from round {index - 1}"
        if before
        else "inherited from the reference's first blocks"
    )
    _narrate("%s: %d layers, %s", name, layers, how)
    schedule = None
    if before:  # a growth round: its own peak learning rate and warmup, when asked
        schedule = {"learning_rate": run.training_args.learning_rate * run.args.growth_lr_scale}
        if run.args.growth_warmup_steps is not None:
            schedule["warmup_steps"] = run.args.growth_warmup_steps
    model, result = _train_round(run, name, build, f"round_{index}", schedule)
    row = _record(run, name, layers, model, result, index)
    verdict = "matched" if row.matched else "not matched"
    _narrate("%s: validation loss %.4f against %.4f: %s", name, row.val_loss, run.target, verdict)
    return model, row


def _random_baseline(run: _Run, layers: int) -> RoundRecord:
    """The paper's baseline: the same-size model from random init, trained on one round's budget."""
    name = f"baseline-{layers}L"
    _narrate("%s: the same-size random-init baseline, %d layers, on one round's budget", name, layers)
    model, result = _train_round(run, name, lambda: inherit(run.reference, layers, random_init=True), "baseline")
    return _record(run, name, layers, model, result)


def _plot(run: _Run, reference_curve: Sequence[dict] | None) -> None:
    """loss_curves.png: the reference, the rounds and the baseline against training tokens."""
    reference = run.reference
    # the config's name: what from_pretrained read, or what a caller named an in-memory model
    name = reference.config.name_or_path or reference.name_or_path or type(reference).__name__
    if Path(name).is_absolute():  # a local folder: its last two parts, not the whole path
        name = "/".join(Path(name).parts[-2:])
    plot_loss_curves(
        [r.to_dict() for r in run.records],
        run.reference_loss,
        run.out / FIGURE_FILE,
        run.target,
        reference_curve=reference_curve,
        reference_label=f"reference ({num_layers_of(reference.config)} layers)",
        title=f"Inheritune from {name}: validation loss against training tokens",
    )


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
    run = _start_run(reference, train_dataset, eval_dataset, args, training_args, tokenizer, callbacks, tracking)
    reference_curve = _measure_reference(run, metadata, reference_curve)

    model = None
    for index, layers in enumerate(run.depths, start=1):
        row = next((r for r in run.rounds if r.round == index), None)  # finished by an earlier process
        model, row = _inheritune_round(run, index, layers) if row is None else (None, row)
        if row.matched:
            break
    if model is None:
        model = load_causal_lm(run.out / row.checkpoint)
    if args.random_baseline and run.baseline is None:
        _random_baseline(run, row.layers)

    if args.plot and run.state.is_main_process:
        _plot(run, reference_curve)
    run.state.wait_for_everyone()
    return InherituneResult(
        model=model,
        rounds=run.rounds,
        reference_loss=run.reference_loss,
        target_loss=run.target,
        matched=bool(row.matched),
        baseline=run.baseline,
        output_dir=run.out,
    )
