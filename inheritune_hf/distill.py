"""Healing by distillation: the reference teaches the model inherited from it (our addition to the paper).

Inheritune retrains the inherited model on plain next-token loss; here each round may instead train on

    (1 - alpha) * CE + alpha * T^2 * KL(teacher || student)

over the same tokens, the teacher being the reference (eval mode, no gradients, run in the training dtype), as
depth pruning with logit distillation does (Minitron). `DistillationTrainer` is a `Trainer` whose `compute_loss`
adds the term (the TRL way), so DDP keeps working with each rank holding a teacher; FSDP and DeepSpeed ZeRO-3,
which would shard the student but not the teacher, are refused. `distillation_kl` computes the KL in chunks of
positions, so a distilled step never holds the [batch, T, vocab] logits twice in fp32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, Trainer

from .errors import TrainingError
from .settings import check_distillation

#: Positions per chunk of the KL: [chunk, vocab] fp32 is 200 MB at a 50K vocabulary.
KL_CHUNK = 1024


class _ChunkedKL(torch.autograd.Function):
    """Sum over rows of KL(softmax(t / T) || softmax(s / T)), with its gradient computed chunk by chunk.

    Autograd through a chunked loop would still keep every chunk's fp32 softmax for the backward pass, which is
    the whole [rows, vocab] in fp32 again. The gradient is known in closed form, d KL / d s = (p_s - p_t) / T,
    so the forward pass writes it (in the logits' dtype) and keeps only that.
    """

    @staticmethod
    def forward(ctx, student: torch.Tensor, teacher: torch.Tensor, rows: torch.Tensor, temperature: float, chunk: int):
        dtype = torch.promote_types(student.dtype, torch.float32)  # fp32 at least; fp64 stays fp64
        total = torch.zeros((), dtype=dtype, device=student.device)
        grad = torch.zeros_like(student) if student.requires_grad else None
        for start in range(0, rows.numel(), chunk):
            index = rows[start : start + chunk]
            log_s = F.log_softmax(student.index_select(0, index).to(dtype) / temperature, dim=-1)
            log_t = F.log_softmax(teacher.index_select(0, index).to(dtype) / temperature, dim=-1)
            p_t = log_t.exp()
            total += (p_t * (log_t - log_s)).sum()
            if grad is not None:
                grad.index_copy_(0, index, ((log_s.exp() - p_t) / temperature).to(grad.dtype))
        ctx.save_for_backward(grad if grad is not None else torch.empty(0))
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_output.to(grad.dtype), None, None, None, None


def distillation_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    temperature: float = 1.0,
    chunk: int = KL_CHUNK,
) -> tuple[torch.Tensor, int]:
    """Summed KL(teacher || student) at temperature T over the positions the next-token loss scores, and their count.

    Logits are [batch, T, vocab]; position t predicts token t + 1, so the last position is never scored, nor any
    whose next label is -100 (the causal LMs' own shift). Without `labels` every position but the last counts.
    The sum is computed in fp32, `chunk` positions at a time; divide by the count (or by the batch's token count,
    as `Trainer` does for the CE) for a mean.
    """
    batch, length, vocab = student_logits.shape
    valid = torch.zeros(batch, length, dtype=torch.bool, device=student_logits.device)
    if labels is None:
        valid[:, :-1] = True
    else:
        valid[:, :-1] = labels[:, 1:].to(valid.device) != -100
    rows = valid.flatten().nonzero().squeeze(-1)
    kl = _ChunkedKL.apply(
        student_logits.reshape(-1, vocab), teacher_logits.reshape(-1, vocab), rows, float(temperature), chunk
    )
    return kl, int(rows.numel())


def distillation_weight_at(weight: float, schedule: str, step: int, max_steps: int) -> float:
    """alpha at optimizer step `step` of `max_steps`: `weight` throughout ('constant'), or falling linearly from
    `weight` at step 0 to 0 at the last step ('linear_decay'), so the student ends on the plain loss and is not held
    back by its teacher late in the round."""
    if schedule == "linear_decay" and max_steps > 0:
        return weight * max(0.0, 1.0 - step / max_steps)
    return weight


class DistillationTrainer(Trainer):
    """`Trainer` that adds `alpha * T^2 * KL(teacher || student)` to the model's own loss (scaled by 1 - alpha).

    Only the training loss changes: evaluation (`prediction_step`) scores the plain next-token loss, the figure a
    round is compared to the reference by. The teacher is put in eval mode and moved to this process's device (in
    place: under DDP each rank holds its own copy); it runs under the accelerator's autocast, so in the training
    dtype, without gradients.
    """

    def __init__(
        self,
        *args: Any,
        teacher: PreTrainedModel,
        distillation_weight: float,
        distillation_temperature: float = 1.0,
        distillation_schedule: str = "constant",
        **kwargs: Any,
    ):
        check_distillation(distillation_weight, distillation_temperature, distillation_schedule)
        super().__init__(*args, **kwargs)
        if self.is_fsdp_enabled or (self.is_deepspeed_enabled and _zero_stage(self) == 3):
            raise TrainingError(
                "Distillation under FSDP or DeepSpeed ZeRO-3 is not supported: the student would be sharded but the "
                "teacher held whole on every rank. Use DDP or ZeRO-1/2, or distillation_weight=0."
            )
        self.teacher = teacher.eval().to(self.args.device)
        self.distillation_weight = distillation_weight
        self.distillation_temperature = distillation_temperature
        self.distillation_schedule = distillation_schedule

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:  # evaluation: the plain loss, comparable with the reference's
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        ce, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        alpha = distillation_weight_at(
            self.distillation_weight, self.distillation_schedule, self.state.global_step, self.state.max_steps
        )
        teacher_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "num_items_in_batch")}
        with torch.no_grad(), self.accelerator.autocast():
            teacher_logits = self.teacher(**teacher_inputs).logits
        temperature = self.distillation_temperature
        kl_sum, positions = distillation_kl(outputs.logits, teacher_logits, inputs.get("labels"), temperature)
        del teacher_logits
        kl = kl_sum / self._kl_divisor(positions, num_items_in_batch)
        loss = (1.0 - alpha) * ce + alpha * temperature**2 * kl.to(ce.dtype)
        return (loss, outputs) if return_outputs else loss

    def _kl_divisor(self, positions: int, num_items_in_batch) -> float | torch.Tensor:
        """What turns the KL sum into a mean exactly as `Trainer.compute_loss` turns the CE sum into one: over the
        accumulated (and, with `average_tokens_across_devices`, all ranks') tokens when the model takes
        `num_items_in_batch`, else over this batch's scored positions."""
        if num_items_in_batch is None or not self.model_accepts_loss_kwargs:
            return max(positions, 1)
        if self.args.average_tokens_across_devices:
            scale = self.accelerator.num_processes // self.get_tp_size()
            return num_items_in_batch / (scale if self.args.n_gpu <= 1 else self.args.n_gpu)
        return num_items_in_batch


def _zero_stage(trainer: Trainer) -> int | None:
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return getattr(plugin, "zero_stage", None)


def training_flops(student_parameters: int, tokens: int, teacher_parameters: int = 0) -> float:
    """Training compute, by the usual 6 N D rule: 6 * N_student * tokens (forward and backward), plus 2 *
    N_teacher * tokens for the teacher's forward when distilling. N counts every parameter once (a tied LM head
    is a real matmul); evaluation is not counted."""
    return float(6 * student_parameters * tokens + 2 * teacher_parameters * tokens)


__all__ = [
    "KL_CHUNK",
    "DistillationTrainer",
    "distillation_kl",
    "distillation_weight_at",
    "training_flops",
]
