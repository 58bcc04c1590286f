"""Step 3 of the method, one round of it: train an inherited model with `transformers.Trainer`.

`train` is a thin layer over `Trainer` (the eval-loss curve, tokens and FLOPs spent, an optional stop at a target
loss, and optionally distillation from the reference through `distill.DistillationTrainer`);
`evaluate_loss` measures a validation loss the same way; `check_training_inputs` refuses data that would train
silently on nothing. The rounds of Algorithm 1 (inherit, train, compare, grow) are in `rounds.py`, which builds on
this module; `grow` sits beside `inherit`. Everything trains through `Trainer`, so Accelerate carries it from one
CPU to many GPUs, FSDP or DeepSpeed with the user's own `accelerate launch` config; there is no training loop or
launcher here.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import datasets
import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

from .data import MIN_DISTINCT_IDS, NO_TOKENIZER_HINT
from .distill import LOGGED, DistillationTrainer, training_flops
from .errors import DataError, TrainingError
from .loading import check_block_size
from .settings import DistillationConfig, as_target_loss, check_training_arguments
from .tracking import AttentionCollapseCallback

# ---------------------------------------------------------------------------------------------------------------
# train: one round
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What one call of `train` did: the eval-loss curve, the final validation loss, and the budget spent."""

    eval_curve: list[dict[str, float]]  # [{"step", "tokens", "eval_loss"}] in step order
    final_loss: float
    steps: int
    tokens: int
    reached_target: bool
    trainer: Trainer = field(repr=False)
    flops: float = 0.0  # training compute, the teacher's forwards included (`distill.training_flops`)
    teacher_tokens: int = 0  # tokens the teacher ran on (0 without distillation; fewer with 'until_target')
    distillation_log: dict[str, float] = field(default_factory=dict)  # the last logged distill_ce / _kl / _alpha


class TargetLossCallback(TrainerCallback):
    """Stop training at the first evaluation after step 0 whose loss is at or below `target`.

    The step-0 evaluation (`eval_on_start`) measures the model before training, for the loss curve; it does not
    end a round that has not trained.
    """

    def __init__(self, target: float):
        self.target = target
        self.reached = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.global_step > 0 and metrics and metrics.get("eval_loss", math.inf) <= self.target:
            self.reached = True
            control.should_training_stop = True
        return control


def _block_length(dataset) -> int:
    first = next(iter(dataset))
    return len(first["input_ids"])


def _sample_ids(dataset, samples: int = 64) -> torch.Tensor:
    """The token ids of the first `samples` blocks, flattened: enough to judge the data without reading it all."""
    if isinstance(dataset, datasets.IterableDataset):
        rows = list(dataset.take(samples))
    else:
        rows = [dataset[i] for i in range(min(samples, len(dataset)))]
    return torch.cat([torch.as_tensor(row["input_ids"]).flatten() for row in rows])


def check_training_inputs(
    model: PreTrainedModel,
    train_dataset,
    eval_dataset,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> None:
    """Reject data the model cannot train on, before any step: empty sets, blocks longer than the model's context,
    ids past its embeddings, and blocks that hold (almost) only one token, which is what an empty tokenizer makes of
    any text (every document becomes just its EOS) and which would otherwise train and even "match"."""
    for name, dataset in (("train", train_dataset), ("eval", eval_dataset)):
        if dataset is None:
            raise DataError(f"The {name} dataset is missing.")
        if not isinstance(dataset, datasets.IterableDataset) and len(dataset) == 0:
            raise DataError(f"The {name} dataset is empty (fewer tokens than one block?). Use more text.")
        if "input_ids" not in (dataset.column_names or ["input_ids"]):
            raise DataError(f"The {name} dataset has no input_ids; pack it with inheritune_hf.data.pack_dataset.")
    check_block_size(model.config, _block_length(train_dataset))
    vocab = model.get_input_embeddings().num_embeddings
    if tokenizer is not None and len(tokenizer) > vocab:
        raise DataError(
            f"The tokenizer has {len(tokenizer)} tokens but the model embeds only {vocab}. Use the reference's own "
            "tokenizer (--tokenizer_name), or build the reference with vocab_size >= len(tokenizer)."
        )
    for name, dataset in (("train", train_dataset), ("eval", eval_dataset)):
        ids = _sample_ids(dataset)
        top = int(ids.max())
        if top >= vocab:
            raise DataError(
                f"The {name} dataset holds token id {top}, outside the model's {vocab} embeddings: it was tokenized "
                f"with another tokenizer than the model's. {NO_TOKENIZER_HINT}"
            )
        distinct = ids.unique()
        if len(distinct) <= MIN_DISTINCT_IDS:
            raise DataError(
                f"The {name} dataset's first blocks hold only the token id(s) {distinct.tolist()}: the tokenizer "
                f"encoded the text to (almost) nothing. {NO_TOKENIZER_HINT}"
            )


def _vocabulary_size(model: PreTrainedModel) -> int:
    head = model.get_output_embeddings()
    return head.weight.shape[0] if head is not None else model.config.vocab_size


def _eval_curve(log_history: list[dict], tokens_per_step: int) -> list[dict[str, float]]:
    curve: dict[int, float] = {}
    for entry in log_history:
        if "eval_loss" in entry:
            curve[int(entry["step"])] = float(entry["eval_loss"])
    return [{"step": s, "tokens": s * tokens_per_step, "eval_loss": loss} for s, loss in sorted(curve.items())]


def train(
    model: PreTrainedModel,
    train_dataset: datasets.Dataset | datasets.IterableDataset,
    eval_dataset: datasets.Dataset,
    args: TrainingArguments,
    *,
    target_loss: float | str | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    resume_from_checkpoint: str | bool | None = None,
    teacher: PreTrainedModel | None = None,
    distillation: DistillationConfig | None = None,
) -> TrainResult:
    """Train `model` with `Trainer` on packed blocks; stop early at `target_loss` if given.

    `args` are the user's `TrainingArguments` unchanged: schedule, batch size, checkpoints, logging and
    distribution all come from them (and from `accelerate launch`). A target needs periodic evaluation
    (`eval_strategy="steps"`). The model is trained in place. Returns the eval-loss curve (one point per
    evaluation, with the tokens seen so far), the final validation loss (evaluated at the last step if no
    evaluation fell there), the steps, training tokens and FLOPs spent, and whether the target was reached.

    With a `teacher` and a `distillation` (`settings.DistillationConfig`) whose weight alpha > 0 the training loss is
    `(1 - alpha) * CE + alpha * T^2 * KL(teacher || model)` (`distill.DistillationTrainer`, handed the config whole;
    T is its temperature, alpha held or decayed by its schedule), and the FLOPs include the teacher's forwards. The
    'until_target' schedule distills until an evaluation first reaches the config's target, then trains on the plain
    loss without the teacher. alpha = 0 (or no config) trains exactly as without a teacher: the same `Trainer`, the
    same weights.

    `callbacks` are added to the Trainer; an `AttentionCollapseCallback` among them is bound to it
    (`tracking.AttentionCollapseCallback.bind`), so its attention values go through `Trainer.log` to `report_to`.
    """
    check_training_arguments(args)
    target = None if target_loss is None else as_target_loss(target_loss)
    if isinstance(train_dataset, datasets.IterableDataset) and args.max_steps <= 0:
        raise TrainingError("A streamed training set has no length: set max_steps in TrainingArguments.")
    if target is not None and args.eval_strategy == "no":
        raise TrainingError(
            "A target loss needs periodic evaluation: set eval_strategy='steps' and eval_steps in TrainingArguments."
        )
    check_training_inputs(model, train_dataset, eval_dataset, tokenizer)
    if distillation is not None:
        distillation.check_evaluates(args.eval_strategy != "no")
    distilling = distillation is not None and distillation.enabled
    if distilling and teacher is None:
        raise TrainingError("distillation_weight > 0 needs a teacher (the reference) to distill from.")
    if distilling and _vocabulary_size(teacher) != _vocabulary_size(model):
        raise TrainingError(
            f"The teacher's vocabulary ({_vocabulary_size(teacher)} logits) differs from the model's "
            f"({_vocabulary_size(model)}): distill only from the reference the model was inherited from."
        )
    # Counted before Trainer wraps the model: FSDP or DeepSpeed would hide the full parameter count.
    student_parameters = model.num_parameters()
    teacher_parameters = teacher.num_parameters() if distilling else 0

    stopper = TargetLossCallback(target) if target is not None else None
    _name_the_causal_lm_loss(model)
    trainer = (DistillationTrainer if distilling else Trainer)(
        **({"teacher": teacher, "distillation": distillation} if distilling else {}),
        model=model,
        args=_min_lr_as_rate(args),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=default_data_collator,
        processing_class=tokenizer,
        callbacks=[*callbacks, *([stopper] if stopper else [])],
    )
    for callback in callbacks:
        if isinstance(callback, AttentionCollapseCallback):
            callback.bind(trainer)  # its values go through trainer.log, so report_to integrations see them
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)

    step = trainer.state.global_step
    evaluated = [e for e in trainer.state.log_history if "eval_loss" in e]
    if not evaluated or evaluated[-1]["step"] != step:
        trainer.evaluate()
    tokens_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    tokens_per_step *= _block_length(train_dataset)
    curve = _eval_curve(trainer.state.log_history, tokens_per_step)
    final = curve[-1]["eval_loss"]
    teacher_tokens = trainer.teacher_steps * tokens_per_step if distilling else 0
    return TrainResult(
        eval_curve=curve,
        final_loss=final,
        steps=step,
        tokens=step * tokens_per_step,
        reached_target=target is not None and final <= target,
        trainer=trainer,
        flops=training_flops(student_parameters, step * tokens_per_step, teacher_parameters, teacher_tokens),
        teacher_tokens=teacher_tokens,
        distillation_log=_last_logged(trainer.state.log_history),
    )


def _last_logged(log_history: list[dict]) -> dict[str, float]:
    """The last logged value of each of `distill.LOGGED` (empty without distillation)."""
    return {key: entry[key] for entry in log_history for key in LOGGED if key in entry}


def evaluate_loss(model: PreTrainedModel, eval_dataset, args: TrainingArguments) -> float:
    """Mean validation loss of `model` on `eval_dataset`, computed by `Trainer.evaluate` (so under DDP too).

    Under DeepSpeed ZeRO-1/2 a Trainer that has not trained refuses to evaluate ("ZeRO inference only makes sense
    with ZeRO Stage 3"), yet every process holds the whole model there: it is evaluated without the DeepSpeed
    engine, in the bf16 / fp16 autocast that DDP would use (the engine would cast the weights themselves).
    """
    _name_the_causal_lm_loss(model)
    trainer = Trainer(model=model, args=args, eval_dataset=eval_dataset, data_collator=default_data_collator)
    if trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage != 3:
        trainer.is_deepspeed_enabled = False
        dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
        with torch.autocast(trainer.accelerator.device.type, dtype=dtype, enabled=dtype is not None):
            return float(trainer.evaluate()["eval_loss"])
    return float(trainer.evaluate()["eval_loss"])


def _min_lr_as_rate(args: TrainingArguments) -> TrainingArguments:
    """`args` with a schedule's absolute `min_lr` given as `min_lr_rate` (min_lr / learning_rate), the same floor.

    transformers turns `min_lr` into that rate by reading `optimizer.defaults`, which DeepSpeed's ZeRO optimizer
    does not have ("'DeepSpeedZeroOptimizer' object has no attribute 'defaults'"); the recipes state the paper's
    floor as an absolute `min_lr`. Returns a copy: the caller's arguments are left as they were.
    """
    kwargs = args.lr_scheduler_kwargs
    if not isinstance(kwargs, dict) or "min_lr" not in kwargs or "min_lr_rate" in kwargs:
        return args
    converted = copy.copy(args)
    rest = {key: value for key, value in kwargs.items() if key != "min_lr"}
    converted.lr_scheduler_kwargs = {**rest, "min_lr_rate": kwargs["min_lr"] / args.learning_rate}
    return converted


def _name_the_causal_lm_loss(model: PreTrainedModel) -> None:
    """Name the causal-LM loss the model computes anyway, so that Trainer counts its tokens right.

    transformers derives `loss_type` from the class name; a causal LM not named `...ForCausalLM` (GPT-2's
    `GPT2LMHeadModel`) gets None. Its forward still uses ForCausalLMLoss (with a "`loss_type=None` ... unrecognized"
    warning), but Trainer then counts `num_items_in_batch` over all T labels of a row instead of the T - 1 it
    predicts, and reports and trains on (T - 1) / T of the mean token loss.
    """
    if getattr(model, "loss_type", "") is None:
        model.loss_type = "ForCausalLM"


__all__ = [
    "TargetLossCallback",
    "TrainResult",
    "check_training_inputs",
    "evaluate_loss",
    "train",
]
