"""Learning-rate schedule (paper 3.2, docs/training.md): linear warm-up, then halving every
``decay`` steps.

lr(step) = base * min(1, step / warmup) * 0.5 ** (step / decay), the decay continuous (not
a staircase), as in the reference. Used as a ``LambdaLR`` factor so the optimizer's state
and the schedule's position are checkpointed the usual way.
"""

from __future__ import annotations

import torch


def lr_factor(step: int, warmup: int, decay: int) -> float:
    ramp = min(1.0, step / warmup) if warmup > 0 else 1.0
    return ramp * 0.5 ** (step / decay)


def make_optimizer(params, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr)


def make_schedule(
    optimizer: torch.optim.Optimizer, warmup: int, decay: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup, decay))
