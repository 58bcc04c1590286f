"""Train and grow: Algorithm 1 of Inheritune on `transformers.Trainer`.

1. Inherit the reference's first l = L/2 blocks (`inherit`).
2. Train them on the same data (`train`, a thin layer over `Trainer`).
3. Compare the validation loss with the reference's on the same validation blocks.
4. While it is worse, grow by 2 blocks (`grow`) and train again, until it matches or reaches `max_layers`.

`run_inheritune` runs the rounds and keeps the run on disk so an interrupted run resumes where it stopped.
Everything trains through `Trainer`, so Accelerate carries it from one CPU to many GPUs, FSDP or DeepSpeed
with the user's own `accelerate launch` config; there is no training loop or launcher here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
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

from .architecture import find_decoder_layers, num_layers_of
from .data import MIN_DISTINCT_IDS, NO_TOKENIZER_HINT
from .errors import DataError, TrainingError
from .inherit import inherit
from .loading import check_block_size
from .settings import GROWTH_STRATEGIES, as_target_loss

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


class TargetLossCallback(TrainerCallback):
    """Stop training at the first evaluation whose loss is at or below `target`."""

    def __init__(self, target: float):
        self.target = target
        self.reached = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and metrics.get("eval_loss", math.inf) <= self.target:
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
) -> TrainResult:
    """Train `model` with `Trainer` on packed blocks; stop early at `target_loss` if given.

    `args` are the user's `TrainingArguments` unchanged: schedule, batch size, checkpoints, logging and
    distribution all come from them (and from `accelerate launch`). A target needs periodic evaluation
    (`eval_strategy="steps"`). The model is trained in place. Returns the eval-loss curve (one point per
    evaluation, with the tokens seen so far), the final validation loss (evaluated at the last step if no
    evaluation fell there), the steps and training tokens spent, and whether the target was reached.
    """
    target = None if target_loss is None else as_target_loss(target_loss)
    if isinstance(train_dataset, datasets.IterableDataset) and args.max_steps <= 0:
        raise TrainingError("A streamed training set has no length: set max_steps in TrainingArguments.")
    if target is not None and args.eval_strategy == "no":
        raise TrainingError(
            "A target loss needs periodic evaluation: set eval_strategy='steps' and eval_steps in TrainingArguments."
        )
    check_training_inputs(model, train_dataset, eval_dataset, tokenizer)

    stopper = TargetLossCallback(target) if target is not None else None
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=default_data_collator,
        processing_class=tokenizer,
        callbacks=[*callbacks, *([stopper] if stopper else [])],
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)

    step = trainer.state.global_step
    evaluated = [e for e in trainer.state.log_history if "eval_loss" in e]
    if not evaluated or evaluated[-1]["step"] != step:
        trainer.evaluate()
    tokens_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    tokens_per_step *= _block_length(train_dataset)
    curve = _eval_curve(trainer.state.log_history, tokens_per_step)
    final = curve[-1]["eval_loss"]
    return TrainResult(
        eval_curve=curve,
        final_loss=final,
        steps=step,
        tokens=step * tokens_per_step,
        reached_target=target is not None and final <= target,
        trainer=trainer,
    )


def evaluate_loss(model: PreTrainedModel, eval_dataset, args: TrainingArguments) -> float:
    """Mean validation loss of `model` on `eval_dataset`, computed by `Trainer.evaluate` (so under DDP too)."""
    trainer = Trainer(model=model, args=args, eval_dataset=eval_dataset, data_collator=default_data_collator)
    return float(trainer.evaluate()["eval_loss"])


# ---------------------------------------------------------------------------------------------------------------
# grow: l -> l + num_new blocks
# ---------------------------------------------------------------------------------------------------------------


def grow(
    model: PreTrainedModel,
    reference: PreTrainedModel,
    num_new: int = 2,
    strategy: str = "restart",
    *,
    reinit: Iterable[str] = (),
) -> PreTrainedModel:
    """A model with `num_new` more blocks than `model` (which has l), made from `reference`.

    - ``"restart"`` (the paper's rule): a fresh `inherit` of the reference's first l + num_new blocks; the
      trained `model` is only used for its depth.
    - ``"continue"``: the trained model's l blocks, embeddings, final norm and head are kept exactly, and the
      reference's next blocks l .. l+num_new-1 are appended, so the earlier round's work is not thrown away.

    Both are built by `inherit`, so the config is rebuilt for the new depth, each block's `layer_idx` is its
    position, and tied embeddings stay tied. `reinit` is passed to `inherit` (it matters for "restart").
    """
    if strategy not in GROWTH_STRATEGIES:
        raise TrainingError(f"strategy must be one of {GROWTH_STRATEGIES}, got {strategy!r}.")
    if num_new < 1:
        raise TrainingError(f"num_new must be at least 1, got {num_new}.")
    have, depth = num_layers_of(model.config), num_layers_of(reference.config)
    if have + num_new > depth:
        raise TrainingError(
            f"Cannot grow {have} blocks by {num_new}: the reference has only {depth}. "
            f"Lower num_new / grow_by or max_layers (at most {depth})."
        )
    grown = inherit(reference, have + num_new, reinit=reinit)
    if strategy == "restart":
        return grown

    trained = model.state_dict()
    stack = find_decoder_layers(grown).path
    new_blocks = tuple(f"{stack}.{i}." for i in range(have, have + num_new))
    try:
        missing, unexpected = grown.load_state_dict(trained, strict=False)
    except RuntimeError as err:
        raise TrainingError(f"The trained model does not fit the reference's architecture: {err}") from err
    stray = [k for k in missing if not k.startswith(new_blocks)]
    if unexpected or stray:
        raise TrainingError(
            "The trained model does not match the reference's architecture "
            f"(unexpected: {list(unexpected)[:5]}, missing: {stray[:5]}); 'continue' needs the same model class."
        )
    lineage = dict(getattr(grown.config, "inheritune", None) or {})
    lineage["grown_from"] = {
        "strategy": "continue",
        "kept_layers": have,
        "new_source_layers": list(range(have, have + num_new)),
    }
    grown.config.inheritune = lineage
    return grown


def __getattr__(name: str):
    """`InherituneArguments` moved to `inheritune_hf.settings`; the old import works, with a warning, until 0.3."""
    if name == "InherituneArguments":
        import warnings

        from . import settings

        warnings.warn(
            "inheritune_hf.train.InherituneArguments moved to inheritune_hf.settings (or import it from "
            "inheritune_hf); the old import goes away in 0.3.",
            DeprecationWarning,
            stacklevel=2,
        )
        return settings.InherituneArguments
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


from .rounds import InherituneResult, run_inheritune  # noqa: E402  (the loop builds on train and grow above)

__all__ = [
    "InherituneResult",
    "TargetLossCallback",
    "TrainResult",
    "as_target_loss",
    "check_training_inputs",
    "evaluate_loss",
    "grow",
    "run_inheritune",
    "train",
]
