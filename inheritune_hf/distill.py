"""Healing by distillation: the reference teaches the model inherited from it (our addition to the paper).

Inheritune retrains the inherited model on plain next-token loss; here each round may instead train on

    (1 - alpha) * CE + alpha * T^2 * KL(teacher || student)

over the same tokens, the teacher being the reference (eval mode, no gradients, run in the training dtype), as
depth pruning with logit distillation does (Minitron). `DistillationTrainer` is a `Trainer` whose `compute_loss`
adds the term (the TRL way), so DDP keeps working with each rank holding a teacher; FSDP and DeepSpeed ZeRO-3,
which would shard the student but not the teacher, are refused. alpha is held, decayed linearly to 0 over the
round, or held until the validation loss first reaches the target and 0 after (`distillation_weight_at`); a step
whose alpha is 0 runs no teacher, and the FLOPs count only the teacher forwards that ran.

Memory: CE and KL are computed together, a chunk of positions at a time, and the teacher runs on a few samples at
a time, so a distilled step holds neither the teacher's [batch, T, vocab] logits nor an fp32 softmax of the whole
batch; its peak is no higher than a plain step's (`benchmarks/bench_distill_memory.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, Trainer
from transformers.loss.loss_utils import LOSS_MAPPING

from .errors import TrainingError
from .settings import DistillationConfig

#: fp32 elements of one chunk's temporaries ([positions, vocab]): 64 MB each, so the positions per chunk shrink as
#: the vocabulary grows (333 at GPT-2's 50K) and a chunk's few temporaries stay small beside the logits.
KL_CHUNK_ELEMENTS = 2**24

#: Names of the values `DistillationTrainer` adds to each training log entry.
LOGGED = ("distill_ce", "distill_kl", "distill_alpha")


def chunk_positions(vocab: int) -> int:
    """Positions per chunk at this vocabulary: `KL_CHUNK_ELEMENTS // vocab`, at least 1."""
    return max(1, KL_CHUNK_ELEMENTS // vocab)


class _DistillationLoss(torch.autograd.Function):
    """`ce_weight * sum CE + kl_weight * sum KL(softmax(t / T) || softmax(s / T))` over the scored positions, with
    its gradient computed chunk by chunk in the forward pass.

    Autograd through a chunked loop would keep every chunk's fp32 softmax for the backward pass, which is the whole
    [positions, vocab] in fp32 again (twice, with the model's own CE beside it). The gradient is known in closed
    form, d/ds = ce_weight * (softmax(s) - onehot(y)) + kl_weight / T * (softmax(s / T) - softmax(t / T)), so the
    forward pass writes it (in the logits' dtype) and keeps only that. The teacher's logits are asked for a few
    samples at a time (`teacher_logits(first, stop)`), so they are never held for the whole batch either.
    Returns (loss, CE sum, KL sum); the sums are for logging and carry no gradient.
    """

    @staticmethod
    def forward(
        ctx,
        student: torch.Tensor,
        targets: torch.Tensor,
        teacher_logits: Callable[[int, int], torch.Tensor] | None,
        ce_weight: float,
        kl_weight: float,
        temperature: float,
        chunk: int,
    ):
        batch, length, vocab = student.shape
        dtype = torch.promote_types(student.dtype, torch.float32)  # fp32 at least; fp64 stays fp64
        ce_total = torch.zeros((), dtype=dtype, device=student.device)
        kl_total = torch.zeros((), dtype=dtype, device=student.device)
        grad = (
            torch.zeros(student.shape, dtype=student.dtype, device=student.device) if student.requires_grad else None
        )
        per_teacher_call = max(1, chunk // length)  # whole samples: a model runs on whole sequences
        for first in range(0, batch, per_teacher_call):
            stop = min(batch, first + per_teacher_call)
            rows_targets = targets[first:stop].reshape(-1)
            scored = (rows_targets != -100).nonzero().squeeze(-1)
            if scored.numel() == 0:
                continue
            teacher = teacher_logits(first, stop).reshape(-1, vocab) if kl_weight else None
            rows = student[first:stop].reshape(-1, vocab)
            for start in range(0, scored.numel(), chunk):
                index = scored[start : start + chunk]
                s = rows.index_select(0, index).to(dtype)
                g = None
                if ce_weight:
                    log_p = F.log_softmax(s, dim=-1)
                    labels = rows_targets.index_select(0, index).unsqueeze(-1)
                    ce_total -= log_p.gather(-1, labels).sum()
                    if grad is not None:
                        g = log_p.exp_()
                        g.scatter_add_(-1, labels, torch.full_like(labels, -1, dtype=g.dtype)).mul_(ce_weight)
                    del log_p
                if kl_weight:
                    log_q = F.log_softmax(s.div_(temperature), dim=-1)
                    del s
                    log_t = F.log_softmax(teacher.index_select(0, index).to(dtype).div_(temperature), dim=-1)
                    p_t = log_t.exp()
                    kl_total += log_t.sub_(log_q).mul_(p_t).sum()
                    del log_t
                    if grad is not None:
                        q = log_q.exp_().sub_(p_t).mul_(kl_weight / temperature)
                        g = q if g is None else g.add_(q)
                    del p_t, log_q
                if g is not None:
                    grad[first:stop].view(-1, vocab).index_copy_(0, index, g.to(grad.dtype))
            del teacher
        ctx.save_for_backward(grad if grad is not None else torch.empty(0))
        loss = ce_weight * ce_total + kl_weight * kl_total
        ctx.mark_non_differentiable(ce_total, kl_total)
        return loss, ce_total, kl_total

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, *unused):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None, None, None, None, None


def _next_token_targets(labels: torch.Tensor | None, shape: torch.Size, device) -> torch.Tensor:
    """The label each position predicts (position t predicts token t + 1, the causal LMs' own shift), -100 where
    nothing is scored: the last position, and any whose next label is -100. Without labels every position but the
    last is scored (by the KL only: the target ids are then meaningless)."""
    targets = torch.full(shape, -100, dtype=torch.long, device=device)
    targets[:, :-1] = 0 if labels is None else labels[:, 1:].to(device)
    return targets


def distillation_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    temperature: float = 1.0,
    chunk: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Summed KL(teacher || student) at temperature T over the positions the next-token loss scores, and their count.

    Logits are [batch, T, vocab]; position t predicts token t + 1, so the last position is never scored, nor any
    whose next label is -100 (the causal LMs' own shift). Without `labels` every position but the last counts.
    The sum is computed in fp32, `chunk` positions at a time (default `chunk_positions(vocab)`); divide by the count
    (or by the batch's token count, as `Trainer` does for the CE) for a mean.
    """
    targets = _next_token_targets(labels, student_logits.shape[:2], student_logits.device)
    chunk = chunk or chunk_positions(student_logits.shape[-1])
    kl, _, _ = _DistillationLoss.apply(
        student_logits, targets, lambda first, stop: teacher_logits[first:stop], 0.0, 1.0, float(temperature), chunk
    )
    return kl, int((targets != -100).sum())


def distillation_weight_at(
    weight: float, schedule: str, step: int, max_steps: int, target_reached_at: int | None = None
) -> float:
    """alpha for optimizer step `step` (0-based) of `max_steps`.

    'constant': `weight` throughout. 'linear_decay': falling linearly from `weight` at step 0 to 0 at the last
    step, so the student ends on the plain loss and is not held back by its teacher late in the round.
    'until_target': `weight` until the evaluation at step `target_reached_at` first found the validation loss at
    the target, 0 from there on: the teacher's forwards are spent only while it still speeds the student up.
    """
    if schedule == "linear_decay" and max_steps > 0:
        return weight * max(0.0, 1.0 - step / max_steps)
    if schedule == "until_target" and target_reached_at is not None and step >= target_reached_at:
        return 0.0
    return weight


class DistillationTrainer(Trainer):
    """`Trainer` that trains on `(1 - alpha) * CE + alpha * T^2 * KL(teacher || student)`.

    Only the training loss changes: evaluation (`prediction_step`) scores the plain next-token loss, the figure a
    round is compared to the reference by. The teacher is put in eval mode and moved to this process's device (in
    place: under DDP each rank holds its own copy); it runs under the accelerator's autocast, so in the training
    dtype, without gradients, and not at all in a step whose alpha is 0.

    Each training log entry gains `distill_ce` and `distill_kl` (means over the logging interval, scaled as `loss`
    is, so `loss == (1 - alpha) * distill_ce + alpha * T^2 * distill_kl` while alpha is constant) and
    `distill_alpha` (its mean over the interval). `distill_kl` averages the steps that ran the teacher, and is
    absent when none did. The settings come whole in `distillation` (`settings.DistillationConfig`, as TRL's
    `GKDTrainer` takes a `GKDConfig`); with its 'until_target' schedule, its `target` is the validation loss at which
    distillation stops (the round's match threshold).
    """

    def __init__(
        self,
        *args: Any,
        teacher: PreTrainedModel,
        distillation: DistillationConfig,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        distillation.check_evaluates(self.args.eval_strategy != "no")
        if self.is_fsdp_enabled or (self.is_deepspeed_enabled and _zero_stage(self) == 3):
            raise TrainingError(
                "Distillation under FSDP or DeepSpeed ZeRO-3 is not supported: the student would be sharded but the "
                "teacher held whole on every rank. Use DDP or ZeRO-1/2, or distillation_weight=0."
            )
        self.teacher = teacher.eval().to(self.args.device)
        self.distillation = distillation
        self._target_reached_at: int | None = None
        self._reset_logged()

    # --- the schedule -------------------------------------------------------------------------------------------

    def target_reached_at(self) -> int | None:
        """The step of the first evaluation after step 0 at or below `distillation.target`, read from the log history
        (so a resumed run knows it too); None before. The step-0 evaluation (`eval_on_start`, for the loss curve)
        measures the model before training and does not end its distillation."""
        target = self.distillation.target
        if self._target_reached_at is None and target is not None:
            self._target_reached_at = next(
                (
                    int(entry["step"])
                    for entry in self.state.log_history
                    if entry.get("step", 0) > 0 and entry.get("eval_loss", math.inf) <= target
                ),
                None,
            )
        return self._target_reached_at

    def distillation_weight_at(self, step: int) -> float:
        """alpha at optimizer step `step` of this round, by the schedule."""
        config = self.distillation
        reached = self.target_reached_at() if config.schedule == "until_target" else None
        return distillation_weight_at(config.weight, config.schedule, step, self.state.max_steps, reached)

    @property
    def teacher_steps(self) -> int:
        """Optimizer steps so far whose loss ran the teacher (those with alpha > 0): what its FLOPs are counted on."""
        return sum(1 for step in range(self.state.global_step) if self.distillation_weight_at(step) > 0)

    # --- the loss -----------------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:  # evaluation: the plain loss, comparable with the reference's
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        step = self.state.global_step
        alpha = self.distillation_weight_at(step)
        if alpha == 0:  # the plain loss, exactly as Trainer computes it, and no teacher forward
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            self._record(step, alpha, loss, None, num_items_in_batch)
            return (loss, outputs) if return_outputs else loss

        temperature = self.distillation.temperature
        labels = inputs.get("labels")
        teacher_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "num_items_in_batch")}
        fused = labels is not None and self._ce_is_plain(model)
        if fused:  # CE computed here with the KL, in one chunked pass: the model's own CE would hold a full softmax
            outputs = model(**teacher_inputs)
            if outputs.get("aux_loss") is not None:
                raise TrainingError(
                    "The model returned an auxiliary loss that distillation would drop; set output_router_logits=False "
                    "in its config or distillation_weight=0."
                )
        else:  # label smoothing, a custom loss or a router loss: the model's (or Trainer's) loss, plus the KL
            model_loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        logits = outputs.logits
        targets = _next_token_targets(labels, logits.shape[:2], logits.device)
        divisor = float(self._divisor(int((targets != -100).sum()), num_items_in_batch))
        batch, sliced = logits.shape[0], teacher_inputs.items()

        def teacher_logits(first: int, stop: int) -> torch.Tensor:
            rows = {k: v[first:stop] if torch.is_tensor(v) and v.shape[:1] == (batch,) else v for k, v in sliced}
            with torch.no_grad(), self.accelerator.autocast():
                return self.teacher(**rows).logits

        distilled, ce_sum, kl_sum = _DistillationLoss.apply(
            logits,
            targets,
            teacher_logits,
            (1.0 - alpha) / divisor if fused else 0.0,
            alpha * temperature**2 / divisor,
            float(temperature),
            chunk_positions(logits.shape[-1]),
        )
        if fused:
            loss, ce = distilled, ce_sum / divisor
        else:
            loss, ce = (1.0 - alpha) * model_loss + distilled.to(model_loss.dtype), model_loss.detach()
        self._record(step, alpha, loss, (ce, kl_sum / divisor), num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def _ce_is_plain(self, model) -> bool:
        """Whether the training loss is the plain causal-LM CE, which the fused pass computes itself: no label
        smoothing or custom loss in Trainer, the standard loss function, no router loss added to it."""
        unwrapped = self.accelerator.unwrap_model(model)
        return (
            self.label_smoother is None
            and self.compute_loss_func is None
            and getattr(unwrapped, "loss_function", None) is LOSS_MAPPING["ForCausalLM"]
            and not getattr(unwrapped.config, "output_router_logits", False)
        )

    def _divisor(self, positions: int, num_items_in_batch) -> float | torch.Tensor:
        """What turns a sum over positions into a mean exactly as `Trainer.compute_loss` turns the CE sum into one:
        over the accumulated (and, with `average_tokens_across_devices`, all ranks') tokens when the model takes
        `num_items_in_batch`, else over this batch's scored positions."""
        if num_items_in_batch is None or not self.model_accepts_loss_kwargs:
            return max(positions, 1)
        if self.args.average_tokens_across_devices:
            scale = self.accelerator.num_processes // self.get_tp_size()
            return num_items_in_batch / (scale if self.args.n_gpu <= 1 else self.args.n_gpu)
        return num_items_in_batch

    # --- the logs -----------------------------------------------------------------------------------------------

    def _reset_logged(self) -> None:
        self._logged_sums = torch.zeros(2, device=self.args.device, dtype=torch.float64)  # CE, KL
        self._logged_alpha: dict[int, float] = {}  # step -> alpha, over the current logging interval
        self._logged_teacher_steps: set[int] = set()

    def _record(self, step: int, alpha: float, loss, ce_kl, num_items_in_batch) -> None:
        """Add this micro-batch's CE and KL to the interval's sums, scaled as `training_step` scales `loss` before
        Trainer sums it (divided by the accumulation steps unless the loss was already normalised over them)."""
        scaled = getattr(self, "loss_is_scaled_for_ga", None)
        if scaled is None:
            scaled = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or bool(
                self.compute_loss_func
            )
        # Set by the training loop; a direct call of compute_loss (outside `train`) has not run it.
        accumulated = getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        factor = 1.0 if scaled else 1.0 / accumulated
        ce, kl = (loss.detach(), None) if ce_kl is None else ce_kl
        self._logged_sums[0] += ce.detach().double().to(self._logged_sums.device) * factor
        if kl is not None:
            self._logged_sums[1] += kl.detach().double().to(self._logged_sums.device) * factor
            self._logged_teacher_steps.add(step)
        self._logged_alpha[step] = alpha

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the interval's mean CE, KL and alpha to a training log entry (gathered over processes as `loss` is)."""
        if "loss" in logs and self._logged_alpha:
            sums = self.accelerator.gather(self._logged_sums.unsqueeze(0)).mean(0).tolist()
            logs["distill_ce"] = sums[0] / len(self._logged_alpha)
            if self._logged_teacher_steps:
                logs["distill_kl"] = sums[1] / len(self._logged_teacher_steps)
            logs["distill_alpha"] = sum(self._logged_alpha.values()) / len(self._logged_alpha)
            self._reset_logged()
        super().log(logs, start_time)


def _zero_stage(trainer: Trainer) -> int | None:
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return getattr(plugin, "zero_stage", None)


def training_flops(
    student_parameters: int, tokens: int, teacher_parameters: int = 0, teacher_tokens: int | None = None
) -> float:
    """Training compute, by the usual 6 N D rule: 6 * N_student * tokens (forward and backward), plus 2 *
    N_teacher * teacher_tokens for the teacher's forwards (default: on every token). N counts every parameter once
    (a tied LM head is a real matmul); evaluation is not counted."""
    teacher_tokens = tokens if teacher_tokens is None else teacher_tokens
    return float(6 * student_parameters * tokens + 2 * teacher_parameters * teacher_tokens)


__all__ = [
    "KL_CHUNK_ELEMENTS",
    "LOGGED",
    "DistillationTrainer",
    "chunk_positions",
    "distillation_kl",
    "distillation_weight_at",
    "training_flops",
]
