"""inheritune_hf.distill: healing by logit distillation from the reference, inside `train` and the Inheritune loop."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _train_setup import BLOCK, blocks, tiny_model, trained_reference, training_args
from transformers import GPT2LMHeadModel, HfArgumentParser, TrainerCallback, default_data_collator

from inheritune_hf.distill import DistillationTrainer, distillation_kl, distillation_weight_at, training_flops
from inheritune_hf.errors import TrainingError
from inheritune_hf.rounds import run_inheritune
from inheritune_hf.settings import DistillationConfig, InherituneArguments
from inheritune_hf.train import evaluate_loss, train


def _reference_kl(student, teacher, labels, temperature):
    """The textbook computation, all positions at once: KL(softmax(t/T) || softmax(s/T)) summed over scored ones."""
    mask = torch.zeros(labels.shape, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != -100
    log_s = F.log_softmax(student[mask] / temperature, dim=-1)
    log_t = F.log_softmax(teacher[mask] / temperature, dim=-1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="sum"), int(mask.sum())


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_the_chunked_kl_and_its_gradient_equal_an_unchunked_computation(chunk, temperature):
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(3, 7, 50, generator=generator, dtype=torch.float64) * 3
    teacher = torch.randn(3, 7, 50, generator=generator, dtype=torch.float64) * 3
    labels = torch.randint(0, 50, (3, 7), generator=generator)
    labels[1, 3:] = -100  # padding: positions 2..5 of sequence 1 predict nothing
    expected, count = _reference_kl(student.clone().requires_grad_(), teacher, labels, temperature)

    leaf = student.clone().requires_grad_()
    kl, positions = distillation_kl(leaf, teacher, labels, temperature, chunk=chunk)
    assert positions == count == 3 * 6 - 4
    assert kl.item() == pytest.approx(expected.item(), abs=1e-6) and expected.item() > 1.0
    kl.backward()
    reference_leaf = student.clone().requires_grad_()
    _reference_kl(reference_leaf, teacher, labels, temperature)[0].backward()
    assert torch.allclose(leaf.grad, reference_leaf.grad, atol=1e-6, rtol=0)
    assert leaf.grad[1, 2:].abs().max() == 0 and leaf.grad[:, -1].abs().max() == 0  # unscored positions


def _one_batch():
    train_blocks, _ = blocks()
    return default_data_collator([train_blocks[i] for i in range(4)])


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_alpha_1_with_a_student_identical_to_its_teacher_gives_zero_loss(tmp_path, temperature):
    teacher = trained_reference()
    student = copy.deepcopy(teacher).train()
    trainer = DistillationTrainer(
        model=student,
        args=training_args(tmp_path, eval_strategy="no"),
        teacher=teacher,
        distillation=DistillationConfig(weight=1.0, temperature=temperature),
    )
    loss = trainer.compute_loss(student, _one_batch())
    assert abs(loss.item()) < 1e-6
    loss.backward()
    assert max(p.grad.abs().max().item() for p in student.parameters() if p.grad is not None) < 1e-6
    # and the same student against another teacher is not at zero: the test can fail
    other = DistillationTrainer(
        model=student,
        args=training_args(tmp_path, eval_strategy="no"),
        teacher=tiny_model(),
        distillation=DistillationConfig(weight=1.0),
    )
    assert other.compute_loss(student, _one_batch()).item() > 0.1


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_the_distilled_loss_and_its_gradient_equal_the_textbook_computation(tmp_path, label_smoothing):
    # Without label smoothing CE and KL are computed together in one chunked pass; with it, the KL is added to
    # Trainer's own (smoothed) loss. Both must equal (1 - a) * CE + a * T^2 * KL / positions, computed plainly.
    alpha, temperature = 0.3, 2.0
    teacher, batch = trained_reference(), _one_batch()
    student = tiny_model(2, seed=3).train()
    trainer = DistillationTrainer(
        model=student,
        args=training_args(tmp_path, eval_strategy="no", label_smoothing_factor=label_smoothing),
        teacher=teacher,
        distillation=DistillationConfig(weight=alpha, temperature=temperature),
    )
    loss = trainer.compute_loss(student, dict(batch))  # a copy: Trainer pops the labels under label smoothing
    loss.backward()
    got = {name: p.grad.clone() for name, p in student.named_parameters()}
    student.zero_grad()

    outputs = student(**batch)
    ce = outputs.loss
    if label_smoothing:
        ce = trainer.label_smoother(outputs, batch["labels"], shift_labels=True)
    with torch.no_grad():
        teacher_logits = teacher(input_ids=batch["input_ids"]).logits
    kl, positions = _reference_kl(outputs.logits, teacher_logits, batch["labels"], temperature)
    expected = (1 - alpha) * ce + alpha * temperature**2 * kl / positions
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and kl.item() > 1.0
    for name, p in student.named_parameters():
        assert torch.allclose(got[name], p.grad, atol=1e-6, rtol=1e-4), name


def test_the_logs_hold_ce_and_kl_apart_and_they_make_up_the_logged_loss(tmp_path):
    # Averaged over a logging interval of 2 steps with 2 accumulated micro-batches each, scaled as `loss` is.
    alpha, temperature = 0.4, 2.0
    train_blocks, val_blocks = blocks()
    args = training_args(tmp_path, max_steps=6, logging_steps=2, gradient_accumulation_steps=2, eval_steps=6)
    result = train(
        tiny_model(2, seed=3), train_blocks, val_blocks, args, teacher=trained_reference(),
        distillation=DistillationConfig(weight=alpha, temperature=temperature),
    )  # fmt: skip
    logged = [entry for entry in result.trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logged] == [2, 4, 6]
    for entry in logged:
        assert entry["distill_alpha"] == alpha
        combined = (1 - alpha) * entry["distill_ce"] + alpha * temperature**2 * entry["distill_kl"]
        assert combined == pytest.approx(entry["loss"], rel=1e-5)
        assert entry["distill_ce"] > 3.0 and entry["distill_kl"] > 0.01  # real values, not zeros
    assert logged[-1]["distill_ce"] < logged[0]["distill_ce"]  # it learns
    assert result.distillation_log == {k: logged[-1][k] for k in ("distill_ce", "distill_kl", "distill_alpha")}
    assert all("distill_ce" not in entry for entry in result.trainer.state.log_history if "eval_loss" in entry)


def test_with_a_decaying_alpha_each_steps_log_holds_that_steps_alpha(tmp_path):
    train_blocks, val_blocks = blocks()
    args = training_args(tmp_path, max_steps=4, logging_steps=1)
    result = train(
        tiny_model(2, seed=3), train_blocks, val_blocks, args, teacher=trained_reference(),
        distillation=DistillationConfig(weight=0.8, schedule="linear_decay"),
    )  # fmt: skip
    logged = [entry for entry in result.trainer.state.log_history if "loss" in entry]
    assert [entry["distill_alpha"] for entry in logged] == pytest.approx([0.8, 0.6, 0.4, 0.2])
    for entry in logged:
        a = entry["distill_alpha"]
        assert (1 - a) * entry["distill_ce"] + a * entry["distill_kl"] == pytest.approx(entry["loss"], rel=1e-5)


def test_alpha_0_trains_bit_identical_weights_to_plain_training(tmp_path):
    train_blocks, val_blocks = blocks()
    plain, taught = tiny_model(2, seed=3), tiny_model(2, seed=3)
    args = training_args(tmp_path, max_steps=6)
    plain_result = train(plain, train_blocks, val_blocks, args)
    result = train(
        taught,
        train_blocks,
        val_blocks,
        args,
        teacher=trained_reference(),
        distillation=DistillationConfig(weight=0.0),
    )
    assert type(result.trainer).__name__ == "Trainer"
    assert plain_result.final_loss == result.final_loss
    for (name, a), b in zip(plain.state_dict().items(), taught.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_distilled_round_evaluates_the_plain_loss_leaves_the_teacher_alone_and_counts_its_flops(tmp_path):
    train_blocks, val_blocks = blocks()
    teacher = trained_reference()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = tiny_model(2, seed=3)
    args = training_args(tmp_path, max_steps=4)
    result = train(
        student, train_blocks, val_blocks, args, teacher=teacher,
        distillation=DistillationConfig(weight=0.5, temperature=2.0),
    )  # fmt: skip
    assert isinstance(result.trainer, DistillationTrainer)
    assert result.final_loss == pytest.approx(evaluate_loss(student, val_blocks, args), abs=1e-6)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    tokens = 4 * 8 * BLOCK
    assert result.flops == 6 * student.num_parameters() * tokens + 2 * teacher.num_parameters() * tokens
    plain = train(tiny_model(2, seed=3), train_blocks, val_blocks, args)
    assert plain.flops == 6 * student.num_parameters() * tokens


def test_the_linear_decay_schedule_falls_from_alpha_to_zero_over_the_round():
    assert [distillation_weight_at(0.8, "linear_decay", s, 4) for s in range(5)] == pytest.approx(
        [0.8, 0.6, 0.4, 0.2, 0.0]
    )
    assert {distillation_weight_at(0.8, "constant", s, 4) for s in range(5)} == {0.8}
    assert [distillation_weight_at(0.8, "until_target", s, 4, target_reached_at=2) for s in range(4)] == [
        0.8, 0.8, 0.0, 0.0,
    ]  # fmt: skip
    assert {distillation_weight_at(0.8, "until_target", s, 4, target_reached_at=None) for s in range(4)} == {0.8}


class _KillAt(TrainerCallback):
    """Ends training after optimizer step `step`, as a killed process would (after that step's checkpoint)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= self.step


def _until_target_run(out: Path, target: float, *, callbacks=(), resume=None, **overrides):
    train_blocks, val_blocks = blocks()
    args = training_args(out, max_steps=12, logging_steps=4, **overrides)
    return train(
        tiny_model(2, seed=3), train_blocks, val_blocks, args, teacher=trained_reference(),
        distillation=DistillationConfig(weight=0.5, schedule="until_target", target=target), callbacks=callbacks,
        resume_from_checkpoint=resume,
    )  # fmt: skip


def test_until_target_distills_until_an_evaluation_reaches_the_target_then_trains_plainly(tmp_path):
    constant = train(
        tiny_model(2, seed=3), *blocks(), training_args(tmp_path / "constant", max_steps=12, logging_steps=4),
        teacher=trained_reference(), distillation=DistillationConfig(weight=0.5),
    )  # fmt: skip
    never = _until_target_run(tmp_path / "never", target=0.0)
    assert never.eval_curve == constant.eval_curve and never.teacher_tokens == never.tokens
    # Between the first evaluation (step 4) and the second: reached at step 8, plain from there.
    target = (constant.eval_curve[0]["eval_loss"] + constant.eval_curve[1]["eval_loss"]) / 2
    switched = _until_target_run(tmp_path / "switched", target=target)
    assert switched.eval_curve[:2] == constant.eval_curve[:2] and switched.eval_curve[2] != constant.eval_curve[2]
    assert switched.trainer.target_reached_at() == 8
    logged = {e["step"]: e for e in switched.trainer.state.log_history if "loss" in e}
    assert [logged[s]["distill_alpha"] for s in (4, 8, 12)] == [0.5, 0.5, 0.0]
    assert (
        "distill_kl" in logged[8]
        and "distill_kl" not in logged[12]
        and logged[12]["distill_ce"] == pytest.approx(logged[12]["loss"])
    )
    tokens_per_step = 8 * BLOCK
    assert switched.teacher_tokens == 8 * tokens_per_step
    student = tiny_model(2).num_parameters()
    teacher = trained_reference().num_parameters()
    assert switched.flops == training_flops(student, 12 * tokens_per_step, teacher, 8 * tokens_per_step)
    assert switched.flops < never.flops


def test_a_resumed_until_target_run_knows_the_target_was_reached_before_the_checkpoint(tmp_path):
    target = 100.0  # reached at the first evaluation, step 4: the steps after it train without the teacher
    whole = _until_target_run(tmp_path / "whole", target)
    killed = tmp_path / "killed"
    _until_target_run(killed, target, callbacks=[_KillAt(8)], save_strategy="steps", save_steps=8)
    # A fresh trainer resumed at step 8 must train steps 9..12 without the teacher, as the whole run did.
    resumed = _until_target_run(killed, target, resume=str(killed / "checkpoint-8"), save_strategy="no")
    assert resumed.trainer.target_reached_at() == whole.trainer.target_reached_at() == 4
    assert resumed.teacher_tokens == whole.teacher_tokens == 4 * 8 * BLOCK
    assert resumed.final_loss == pytest.approx(whole.final_loss, abs=1e-5)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"distillation_weight": -0.1}, "distillation_weight"),
        ({"distillation_weight": 1.5}, "distillation_weight"),
        ({"distillation_weight": float("nan")}, "distillation_weight"),
        ({"distillation_temperature": 0.0}, "distillation_temperature"),
        ({"distillation_temperature": float("inf")}, "distillation_temperature"),
        ({"distillation_schedule": "cosine"}, "distillation_schedule"),
    ],
)
def test_bad_distillation_settings_are_refused(settings, message):
    with pytest.raises(TrainingError, match=message):
        InherituneArguments(**settings)


def test_until_target_without_a_target_or_evaluations_is_refused_before_anything_is_written(tmp_path):
    train_blocks, val_blocks = blocks()
    model, teacher = tiny_model(2), trained_reference()
    before = model.transformer.h[0].mlp.c_fc.weight.clone()
    with pytest.raises(TrainingError, match="needs the target loss"):
        DistillationConfig(weight=0.5, schedule="until_target")
    with pytest.raises(TrainingError, match="eval_strategy='steps'"):
        train(
            model, train_blocks, val_blocks, training_args(tmp_path / "b", eval_strategy="no"), teacher=teacher,
            distillation=DistillationConfig(weight=0.5, schedule="until_target", target=5.0),
        )  # fmt: skip
    assert torch.equal(model.transformer.h[0].mlp.c_fc.weight, before)
    until = {"distillation_weight": 0.5, "distillation_schedule": "until_target"}
    settings = InherituneArguments(start_layers=2, reference_loss=100.0, plot=False, **until)
    with pytest.raises(TrainingError, match="eval_strategy='steps'"):
        run_inheritune(teacher, train_blocks, val_blocks, settings, training_args(tmp_path / "c", eval_strategy="no"))
    assert not (tmp_path / "c").exists()


def test_distillation_without_a_teacher_is_refused_before_training(tmp_path):
    train_blocks, val_blocks = blocks()
    model = tiny_model(2)
    before = model.transformer.h[0].mlp.c_fc.weight.clone()
    with pytest.raises(TrainingError, match="teacher"):
        train(model, train_blocks, val_blocks, training_args(tmp_path), distillation=DistillationConfig(weight=0.5))
    with pytest.raises(TrainingError, match="vocabulary"):
        train(
            model, train_blocks, val_blocks, training_args(tmp_path), teacher=tiny_model(vocab_size=600),
            distillation=DistillationConfig(weight=0.5),
        )  # fmt: skip
    assert torch.equal(model.transformer.h[0].mlp.c_fc.weight, before)


def test_the_distillation_flags_parse_into_the_settings():
    (settings,) = HfArgumentParser(InherituneArguments).parse_args_into_dataclasses(
        ["--distillation_weight", "0.5", "--distillation_temperature", "2", "--distillation_schedule", "linear_decay"]
    )
    assert (settings.distillation_weight, settings.distillation_temperature) == (0.5, 2.0)
    assert settings.distillation_schedule == "linear_decay"


def test_the_distillation_settings_travel_whole_from_the_settings_to_the_trainer(tmp_path):
    settings = InherituneArguments(
        distillation_weight=0.4, distillation_temperature=2.0, distillation_schedule="linear_decay"
    )
    config = settings.distillation(target=3.0)
    assert config == DistillationConfig(weight=0.4, temperature=2.0, schedule="linear_decay", target=3.0)
    result = train(
        tiny_model(2, seed=3), *blocks(), training_args(tmp_path, max_steps=1), teacher=trained_reference(),
        distillation=config,
    )  # fmt: skip
    assert result.trainer.distillation is config


def test_rounds_json_counts_the_teachers_flops_and_a_resume_with_other_distillation_settings_is_refused(tmp_path):
    train_blocks, val_blocks = blocks()
    out, reference = tmp_path / "run", trained_reference()
    first = InherituneArguments(start_layers=2, reference_loss=100.0, plot=False, distillation_weight=0.5)
    result = run_inheritune(reference, train_blocks, val_blocks, first, training_args(out, max_steps=4))
    (row,) = json.loads((out / "rounds.json").read_text())
    tokens = 4 * 8 * BLOCK
    expected = 6 * result.model.num_parameters() * tokens + 2 * reference.num_parameters() * tokens
    assert row["flops"] == row["cumulative_flops"] == expected and row["distillation_weight"] == 0.5
    assert row["teacher_tokens"] == tokens and row["train_ce"] > 3.0 and row["train_kl"] > 0.0
    table = (out / "rounds.json").read_text()
    for changed, name in (
        ({"distillation_weight": 0.25}, "distillation_weight"),
        ({"distillation_weight": 0.5, "distillation_temperature": 2.0}, "distillation_temperature"),
        ({"distillation_weight": 0.5, "distillation_schedule": "linear_decay"}, "distillation_schedule"),
        ({}, "distillation_weight"),
    ):
        settings = InherituneArguments(start_layers=2, reference_loss=100.0, plot=False, resume=True, **changed)
        with pytest.raises(TrainingError, match=name):
            run_inheritune(reference, train_blocks, val_blocks, settings, training_args(out, max_steps=4))
    assert (out / "rounds.json").read_text() == table
    same = InherituneArguments(start_layers=2, reference_loss=100.0, plot=False, resume=True, distillation_weight=0.5)
    resumed = run_inheritune(reference, train_blocks, val_blocks, same, training_args(out, max_steps=4))
    assert [record.to_dict() for record in resumed.rounds] == [row]


def _distilled_train(out: Path, reference: Path, batch: int) -> None:
    """One distilled round (alpha 0.5, T 2) from the saved `reference`; the main process writes out/result.json."""
    train_blocks, val_blocks = blocks()
    args = training_args(out / "trainer", per_device_train_batch_size=batch)
    teacher = GPT2LMHeadModel.from_pretrained(reference)
    result = train(
        tiny_model(2, seed=3), train_blocks, val_blocks, args, teacher=teacher,
        distillation=DistillationConfig(weight=0.5, temperature=2.0),
    )  # fmt: skip
    if args.process_index == 0:
        summary = {"eval_curve": result.eval_curve, "world_size": args.world_size, "tokens": result.tokens}
        (out / "result.json").write_text(json.dumps(summary))


def test_a_two_process_gloo_distilled_run_matches_one_process(tmp_path):
    # As in test_train_ddp.py: `--multi_gpu` with use_cpu=True, as `--cpu --num_processes 2` runs one process.
    trained_reference().save_pretrained(tmp_path / "reference")
    _distilled_train(tmp_path / "single", tmp_path / "reference", batch=8)
    accelerate = Path(sys.executable).with_name("accelerate")
    launched = subprocess.run(
        [
            str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no",
            __file__, str(tmp_path / "ddp"), str(tmp_path / "reference"),
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    one = json.loads((tmp_path / "single" / "result.json").read_text())
    two = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["tokens"] == two["tokens"] == 12 * 8 * BLOCK  # 2 processes x 4 blocks: the same global batch
    assert [p["step"] for p in one["eval_curve"]] == [p["step"] for p in two["eval_curve"]] == [4, 8, 12]
    for p, q in zip(one["eval_curve"], two["eval_curve"], strict=True):
        assert p["eval_loss"] == pytest.approx(q["eval_loss"], abs=2e-2)  # the same tolerance as test_train_ddp.py


if __name__ == "__main__":  # the DDP test's script: accelerate launch tests/test_distill.py OUT REFERENCE
    _distilled_train(Path(sys.argv[1]), Path(sys.argv[2]), batch=4)
