"""The burn-in losses of paper 3.2, docs/training.md, each a small pure function batched over frames.

Shapes: frames are flattened to F = B*T; attention maps ``maps`` (F, K, N) with N = h*w and
the background slot last; motion masks ``targets`` (F, M, N) (bool or float in {0, 1}),
padded to the batch's largest M, with ``valid`` (F, M) marking the real ones.
Logs are clamped at ``EPS`` so an attention of exactly 0 or 1 gives a finite loss.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

EPS = 1e-6
REGIONS = ("all", "nonobject")
FRAME_REDUCTIONS = ("mean", "sum")
COLOUR_RANGES = ("unit", "signed")
COMPLETION_TARGETS = ("projection", "input")


def _log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x.clamp(EPS, 1.0))


def _log1m(x: torch.Tensor) -> torch.Tensor:
    return torch.log((1 - x).clamp(EPS, 1.0))


@torch.no_grad()
def match_slots(maps: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Hungarian matching of each frame's masks to its K-1 foreground slots.

    Cost of (mask m, slot k) = -sum_n [m log W_k + (1 - m) log(1 - W_k)], the negative
    log-likelihood of the binary mask under the (detached) map. All cost matrices come from
    one batched matmul and cross to the CPU once; only scipy's tiny solves loop.
    Returns ``assign`` (F, M) long: the matched slot index, -1 for padding or a mask left
    over when a frame has more masks than foreground slots.
    """
    fg = maps[:, :-1].float()  # (F, K-1, N)
    t = targets.float()
    log_w, log_1mw = _log(fg), _log1m(fg)
    loglik = torch.bmm(t, (log_w - log_1mw).transpose(1, 2)) + log_1mw.sum(-1).unsqueeze(1)
    cost = (-loglik).cpu().numpy()  # (F, M, K-1)
    valid_np = valid.cpu().numpy()
    assign = np.full(valid_np.shape, -1, dtype=np.int64)
    for f in np.flatnonzero(valid_np.any(axis=1)):
        rows = np.flatnonzero(valid_np[f])
        r, c = linear_sum_assignment(cost[f, rows])
        assign[f, rows[r]] = c
    return torch.from_numpy(assign).to(maps.device)


def matched_bce(
    maps: torch.Tensor,
    targets: torch.Tensor,
    assign: torch.Tensor,
    pos_weight: torch.Tensor | float,
) -> torch.Tensor:
    """Per frame (F,): mean over matched masks of mean_pixels[-(w m log W + (1-m) log(1-W))].

    ``pos_weight`` (F, M) or a scalar weighs the mask's pixels (paper 3.2: 2 - relative area;
    distillation: 1 + score). A frame without matched masks contributes 0.
    """
    f, m, n = targets.shape
    matched = assign >= 0
    index = assign.clamp(min=0).unsqueeze(-1).expand(f, m, n)
    w_map = torch.gather(maps.float(), 1, index)  # (F, M, N): the map of each mask's slot
    t = targets.float()
    if not torch.is_tensor(pos_weight):
        pos_weight = torch.full((f, m), float(pos_weight), device=maps.device)
    bce = -(pos_weight.unsqueeze(-1) * t * _log(w_map) + (1 - t) * _log1m(w_map)).mean(-1)
    bce = torch.where(matched, bce, torch.zeros_like(bce))
    return bce.sum(1) / matched.sum(1).clamp(min=1)


def over_frames(per_frame: torch.Tensor, has: torch.Tensor, clips: int, how: str) -> torch.Tensor:
    """A clip batch's matched-BCE term from its per-frame values (F,) (0 where a frame has
    no matched mask; ``has`` marks the frames with targets).

    ``mean``: the mean over frames with targets (0 when none has); ``sum``: the sum over all
    frames divided by the number of clips, i.e. a clip's frames add up (the authors')."""
    if how == "sum":
        return per_frame.sum() / clips
    if how != "mean":
        raise ValueError(f"how must be one of {FRAME_REDUCTIONS}, got {how!r}")
    return per_frame[has].mean() if bool(has.any()) else per_frame.sum() * 0


def size_weight(targets: torch.Tensor) -> torch.Tensor:
    """(F, M): 2 - area(m) / area(frame), so small objects weigh more."""
    return 2 - targets.float().mean(-1)


def fg_bg_loss(
    w_fg: torch.Tensor, m_fg: torch.Tensor, alpha: float, region: str = "all"
) -> torch.Tensor:
    """Eq. 1, per frame (F,): mean[-m_fg log W_fg] + alpha * mean[W_fg].

    ``region="all"`` (DIOD) regularises W_fg over the whole map; ``"nonobject"`` (BMOD)
    only outside the motion masks, as the mean of W_fg over those pixels.
    w_fg (F, N) = 1 - W_bg; m_fg (F, N) = union of the frame's motion masks.
    """
    m = m_fg.float()
    w = w_fg.float()
    attract = -(m * _log(w)).mean(-1)
    if region == "all":
        penalty = w.mean(-1)
    elif region == "nonobject":
        outside = 1 - m
        penalty = (outside * w).sum(-1) / outside.sum(-1).clamp(min=1)
    else:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    return attract + alpha * penalty


def completion_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scene completion (DIOD-3D, SPEC-xMOD.md section 2): the mean squared error over the
    elements where the target holds a point (> 0); the decoder's dense output is free
    elsewhere, so empty pixels are neither asked to be empty nor filled."""
    filled = target > 0
    error = (predicted.float() - target.float()) ** 2
    return torch.where(filled, error, 0.0).sum() / filled.sum().clamp(min=1)


def reconstruction_loss(
    recon: torch.Tensor, frames: torch.Tensor, colour_range: str = "unit"
) -> torch.Tensor:
    """Mean squared error between reconstruction and input frames (both RGB in [0, 1]),
    measured in ``unit`` [0, 1] colours or in ``signed`` [-1, 1] ones (x2, so 4 times the
    error: the authors' normalisation)."""
    if colour_range not in COLOUR_RANGES:
        raise ValueError(f"colour_range must be one of {COLOUR_RANGES}, got {colour_range!r}")
    scale = 4.0 if colour_range == "signed" else 1.0
    return scale * torch.mean((recon.float() - frames.float()) ** 2)
