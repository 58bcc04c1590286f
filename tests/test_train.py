"""inheritune_hf.train: one round of training on Trainer, the target-loss callback, the method's arguments."""

from __future__ import annotations

import warnings

import datasets
import pytest
import torch
from _train_setup import BLOCK, VOCAB, blocks, tiny_model, tokenizer, training_args
from transformers import HfArgumentParser, TrainingArguments, get_scheduler

from inheritune_hf.errors import DataError, TrainingError
from inheritune_hf.settings import InherituneArguments
from inheritune_hf.train import _min_lr_as_rate, train


def test_train_returns_the_eval_curve_and_final_loss(tmp_path):
    train_blocks, val_blocks = blocks()
    model = tiny_model(2)
    result = train(model, train_blocks, val_blocks, training_args(tmp_path))
    assert [point["step"] for point in result.eval_curve] == [4, 8, 12]
    assert [point["tokens"] for point in result.eval_curve] == [s * 8 * BLOCK for s in (4, 8, 12)]
    assert result.final_loss == result.eval_curve[-1]["eval_loss"]
    assert result.eval_curve[-1]["eval_loss"] < result.eval_curve[0]["eval_loss"]
    assert result.steps == 12 and result.tokens == 12 * 8 * BLOCK
    assert not result.reached_target


def test_final_loss_is_evaluated_when_no_evaluation_fell_on_the_last_step(tmp_path):
    train_blocks, val_blocks = blocks()
    result = train(tiny_model(2), train_blocks, val_blocks, training_args(tmp_path, max_steps=6, eval_strategy="no"))
    assert [point["step"] for point in result.eval_curve] == [6]


def test_callback_stops_training_at_the_target_loss(tmp_path):
    train_blocks, val_blocks = blocks()
    # an untrained model starts near ln(512) = 6.24; 6.0 is reached within the first evaluations
    result = train(tiny_model(2), train_blocks, val_blocks, training_args(tmp_path, max_steps=40), target_loss=6.0)
    assert result.reached_target
    assert result.steps < 40 and result.steps % 4 == 0
    assert result.final_loss <= 6.0
    assert all(point["eval_loss"] > 6.0 for point in result.eval_curve[:-1])


def test_target_needs_periodic_evaluation(tmp_path):
    train_blocks, val_blocks = blocks()
    with pytest.raises(TrainingError, match="eval_strategy"):
        train(tiny_model(2), train_blocks, val_blocks, training_args(tmp_path, eval_strategy="no"), target_loss=3.0)


@pytest.mark.parametrize("target", ["abc", "nan", float("inf"), -1.0, None])
def test_a_target_that_is_not_a_number_is_rejected(tmp_path, target):
    with pytest.raises(TrainingError, match="target loss"):
        InherituneArguments(target_loss=target)


def test_a_target_that_is_not_a_number_is_rejected_by_train_before_training(tmp_path):
    train_blocks, val_blocks = blocks()
    model = tiny_model(2)
    before = model.transformer.h[0].mlp.c_fc.weight.clone()
    with pytest.raises(TrainingError, match="target loss"):
        train(model, train_blocks, val_blocks, training_args(tmp_path), target_loss="low")
    assert model.transformer.h[0].mlp.c_fc.weight.equal(before)


def test_tokenizer_larger_than_the_embeddings_is_rejected(tmp_path):
    train_blocks, val_blocks = blocks()
    bigger = tokenizer()  # 512 tokens
    small_model = tiny_model(2, vocab_size=300)
    with pytest.raises(DataError, match="embeds only 300"):
        train(small_model, train_blocks, val_blocks, training_args(tmp_path), tokenizer=bigger)
    # without the tokenizer, the ids in the data give it away
    with pytest.raises(DataError, match="outside the model's 300 embeddings"):
        train(small_model, train_blocks, val_blocks, training_args(tmp_path))


def test_empty_dataset_is_rejected(tmp_path):
    _, val_blocks = blocks()
    empty = datasets.Dataset.from_dict({"input_ids": [], "labels": []})
    with pytest.raises(DataError, match="train dataset is empty"):
        train(tiny_model(2), empty, val_blocks, training_args(tmp_path))


def test_inheritune_arguments_default_to_the_paper(tmp_path):
    args = InherituneArguments()
    assert args.start_layers is None  # L/2, resolved against the reference
    assert args.grow_by == 2 and args.growth_strategy == "restart" and args.target_loss == "reference"
    assert args.target(2.81) == 2.81
    assert InherituneArguments(target_loss="3.5").target(2.81) == 3.5


def test_inheritune_arguments_parse_beside_training_arguments_from_flags_and_yaml(tmp_path):
    parser = HfArgumentParser((InherituneArguments, TrainingArguments))
    flags = ["--output_dir", str(tmp_path), "--start_layers", "12", "--growth_strategy", "continue"]
    flags += ["--target_loss", "2.9", "--reinit", "position_embeddings", "final_norm", "--learning_rate", "3e-4"]
    args, training = parser.parse_args_into_dataclasses(args=flags)
    assert args.start_layers == 12 and args.growth_strategy == "continue" and args.target(1.0) == 2.9
    assert args.reinit == ["position_embeddings", "final_norm"] and training.learning_rate == 3e-4
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"output_dir: {tmp_path}\nstart_layers: 12\ngrow_by: 2\nmax_steps: 100\n")
    args, training = parser.parse_yaml_file(str(recipe))
    assert args.start_layers == 12 and training.max_steps == 100
    with pytest.raises(TrainingError, match="growth_strategy"):
        InherituneArguments(growth_strategy="stack")
    with pytest.raises(TrainingError, match="reinit"):
        InherituneArguments(reinit=["position_embedding"])


def test_vocab_fits(tmp_path):
    assert len(tokenizer()) == VOCAB == tiny_model(2).get_input_embeddings().num_embeddings


def test_a_streamed_training_set_trains_for_max_steps(tmp_path):
    train_blocks, val_blocks = blocks()
    stream = train_blocks.to_iterable_dataset()
    result = train(tiny_model(2), stream, val_blocks, training_args(tmp_path, max_steps=4, eval_steps=2))
    assert result.steps == 4 and result.tokens == 4 * 8 * BLOCK
    with pytest.raises(TrainingError, match="max_steps"):
        train(tiny_model(2), stream, val_blocks, training_args(tmp_path, max_steps=-1, num_train_epochs=1))


def test_a_gpt2_round_does_not_warn_about_an_unrecognized_loss_type(tmp_path):
    """GPT2LMHeadModel's class name gives transformers no loss type: it warned "`loss_type=None` was set in the config
    but it is unrecognized" on every run, about a setting nobody made, then used ForCausalLM's loss anyway."""
    import logging

    from transformers.modeling_utils import logger as modeling_logger

    modeling_logger.warning_once.cache_clear()  # once per process: an earlier test may have used it up
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    modeling_logger.addHandler(handler)
    try:
        train_blocks, val_blocks = blocks()
        result = train(tiny_model(2), train_blocks, val_blocks, training_args(tmp_path, max_steps=4))
    finally:
        modeling_logger.removeHandler(handler)
    assert result.steps == 4
    assert not [record for record in records if "loss_type" in record.getMessage()]


def test_the_reported_loss_is_the_models_own_mean_token_loss(tmp_path):
    """The validation loss every comparison rests on is the mean cross-entropy over the predicted tokens, exactly as
    the model computes it: Trainer once averaged GPT-2's over all BLOCK labels, position 0 included (no loss_type),
    which under-reported it by (BLOCK - 1) / BLOCK."""
    import torch

    from inheritune_hf.train import evaluate_loss

    _, val_blocks = blocks()
    val_blocks = val_blocks.select(range(32))
    model = tiny_model(2).eval()
    ids = torch.as_tensor(val_blocks.with_format("torch")[:]["input_ids"])
    with torch.no_grad():
        own = sum(model(input_ids=part, labels=part).loss.item() for part in ids.split(16)) / 2
    reported = evaluate_loss(model, val_blocks, training_args(tmp_path))
    assert abs(reported - own) < 1e-5 * own
    assert abs(reported - own * (BLOCK - 1) / BLOCK) > 1e-3


class _OptimizerWithoutDefaults(torch.optim.SGD):
    """Like DeepSpeed's ZeRO optimizer (as Trainer holds it): no `defaults` to read the initial learning rate from."""

    @property
    def defaults(self):
        raise AttributeError("'DeepSpeedZeroOptimizer' object has no attribute 'defaults'")


def _learning_rates(args: TrainingArguments, optimizer: torch.optim.Optimizer, steps: int = 10) -> list[float]:
    scheduler = get_scheduler(
        args.lr_scheduler_type, optimizer, num_warmup_steps=2, num_training_steps=steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )  # fmt: skip
    rates = []
    for _ in range(steps + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        with warnings.catch_warnings():  # no optimizer.step(): the schedule alone is under test
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            scheduler.step()
    return rates


def test_an_absolute_min_lr_reaches_the_scheduler_as_the_same_rate(tmp_path):
    # The recipes give the paper's floor as `min_lr`; transformers divides it by `optimizer.defaults["lr"]`, which
    # DeepSpeed's ZeRO optimizer lacks, so `train` hands Trainer the rate instead: the same schedule, step by step.
    floor = {"min_lr": 1e-5}
    args = training_args(
        tmp_path, learning_rate=3e-4, lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs=floor
    )
    converted = _min_lr_as_rate(args)
    assert args.lr_scheduler_kwargs == {"min_lr": 1e-5}  # the caller's arguments are left as they were
    assert converted.lr_scheduler_kwargs == {"min_lr_rate": 1e-5 / 3e-4}

    def optimizer(without_defaults: bool = False) -> torch.optim.Optimizer:
        made = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
        if without_defaults:
            made.__class__ = _OptimizerWithoutDefaults  # after SGD has set its defaults
        return made

    rates = _learning_rates(args, optimizer())
    assert rates[-1] == pytest.approx(1e-5, rel=1e-12) and max(rates) == pytest.approx(3e-4, rel=1e-12)
    assert _learning_rates(converted, optimizer(without_defaults=True)) == rates  # equal, float for float
    with pytest.raises(AttributeError, match="defaults"):  # what the conversion avoids
        _learning_rates(args, optimizer(without_defaults=True))
    plain = training_args(tmp_path)
    assert _min_lr_as_rate(plain) is plain  # no floor given: the arguments as they are
