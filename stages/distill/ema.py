"""The teacher: an exponential moving average of the student (paper section 3.3.1, after
Unbiased Teacher [27]), updated after every optimizer step with the keep rate of the run's
configuration (``stages.train.config.DistillSettings.ema``).

Fixes over the reference: the teacher is ALWAYS in eval mode, so its BatchNorm layers use
the averaged running statistics instead of normalising with the statistics of the batch it
labels (the reference never switched it out of train mode); integer buffers
(``num_batches_tracked``) are copied, not averaged; and under DDP the teacher stays
identical on every rank: parameters are averaged from the unwrapped student (identical after
DDP's gradient all-reduce), buffers are then broadcast from rank 0, because each rank's
student BatchNorm statistics have moved with its own local batch since DDP last broadcast
them. A frozen encoder (DIOD*'s DINOv2) is shared by teacher and student, neither copied
nor averaged: its weights never change.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


class EmaTeacher(nn.Module):
    """A frozen copy of the student that follows it by EMA; never trains, never gets grads."""

    def __init__(self, student: nn.Module, keep_rate: float) -> None:
        super().__init__()
        self.keep_rate = keep_rate
        self.module = copy.deepcopy(unwrap(student))
        self.module.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> EmaTeacher:
        """Stays in eval mode whatever is asked: see the module docstring."""
        return super().train(False)

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        """teacher <- keep_rate * teacher + (1 - keep_rate) * student, parameters and buffers."""
        source = unwrap(student)
        teacher_params = _matching(self.module.named_parameters(), source.named_parameters())
        _lerp(teacher_params, 1.0 - self.keep_rate)
        pairs = _matching(self.module.named_buffers(), source.named_buffers())
        _lerp([(t, s) for t, s in pairs if t.is_floating_point()], 1.0 - self.keep_rate)
        for t, s in pairs:
            if not t.is_floating_point():
                t.copy_(s)
        _broadcast_from_rank0(list(self.module.buffers()))


def _matching(teacher, student) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(teacher, student) tensor pairs by name, without the tensors both share (a frozen
    encoder, which copies of the model share: nothing to average)."""
    teacher, student = list(teacher), list(student)
    if [n for n, _ in teacher] != [n for n, _ in student]:
        raise ValueError("the student's parameters/buffers do not match the teacher's")
    return [(t, s) for (_, t), (_, s) in zip(teacher, student, strict=True) if t is not s]


def _lerp(pairs: list[tuple[torch.Tensor, torch.Tensor]], weight: float) -> None:
    if pairs:
        teacher, student = zip(*pairs, strict=True)
        torch._foreach_lerp_(list(teacher), [s.to(t.dtype) for t, s in pairs], weight)


def _broadcast_from_rank0(tensors: list[torch.Tensor]) -> None:
    """One broadcast per dtype of all ``tensors`` flattened, when running distributed."""
    if not tensors or not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_world_size() == 1:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for tensor in tensors:
        by_dtype.setdefault(tensor.dtype, []).append(tensor)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.broadcast(flat, src=0)
        offset = 0
        for tensor in group:
            tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()
