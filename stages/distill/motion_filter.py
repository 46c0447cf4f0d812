"""Motion masks filtered by the teacher's objectness (paper section 3.3.3, eq. 4).

Motion masks from flow carry no confidence and include background noise (parallax,
flow errors). During distillation the teacher's foreground map W_fg = 1 - W_bg serves as an
objectness map: a mask is kept (the set M') only when the mean of W_fg over its pixels is
above the threshold, and that mean is its score in the (1 + score) BCE weight. M' also
replaces M in the fg/bg loss (eq. 1 with m'_fg), so a rejected mask no longer pulls W_fg up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FilteredMotion:
    """The kept masks M' of each frame, in the input's padded layout.

    ``valid`` (F, M) bool marks M' (the masks tensor itself is unchanged, so it is not
    copied); ``scores`` (F, M) float32 is the mean teacher W_fg over each mask (0 for
    padding and empty masks), ``pos_weight = 1 + scores`` in eq. 4; ``fg`` (F, h, w) float32
    is the union of the kept masks, m'_fg of the fg/bg loss.
    """

    valid: torch.Tensor
    scores: torch.Tensor
    fg: torch.Tensor


def filter_motion_masks(
    targets: torch.Tensor, valid: torch.Tensor, w_fg: torch.Tensor, threshold: float
) -> FilteredMotion:
    """Keep motion masks ``targets`` (F, M, h, w) whose mean teacher ``w_fg`` (F, h, w) >
    ``threshold`` (the run's ``PseudoLabelConfig.threshold``, checked there)."""
    if targets.dim() != 4 or w_fg.shape != (targets.shape[0], *targets.shape[2:]):
        raise ValueError(
            f"expected masks (F, M, h, w) and W_fg (F, h, w), got {tuple(targets.shape)} "
            f"and {tuple(w_fg.shape)}"
        )
    masks = targets.flatten(2).float()
    area = masks.sum(dim=2)
    inside = torch.bmm(masks, w_fg.flatten(1).float().unsqueeze(2)).squeeze(2)
    present = valid & (area > 0)
    scores = torch.where(present, inside / area.clamp(min=1), 0.0)
    kept = present & (scores > threshold)
    fg = (targets.bool() & kept[:, :, None, None]).any(dim=1).float()
    return FilteredMotion(valid=kept, scores=scores, fg=fg)
