"""LiDAR maps of a training clip under its augmentation (SPEC-xMOD.md sections 1 and 2).

The clip's crop comes from the projection itself: ``Dataset.lidar(..., box)`` puts the
points on a grid over exactly the pixels the frames and masks are cut to, so no point is
lost or moved by resampling a sparse map. The flip mirrors the map and the world with it
(x negated: a point on the left is on the right in the mirrored scene). Point drop zeroes
some filled pixels of the student's input only: the completion target keeps them, so the
model learns to fill in what it does not see (the authors' code uses the dropped input as
the target, where a dropped point is never asked for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages.errors import UserError


@dataclass(frozen=True)
class LidarAugment:
    #: with this probability a clip loses this share of its filled pixels (the training
    #: setting ``point_drop``, stages.train.config)
    point_drop: float
    #: the network's input fills gaps up to this many point spacings (the model setting
    #: ``lidar_fill``, stages.lidar.projection.fill_gaps); 0: sparse
    fill: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.point_drop < 1:
            raise UserError(f"point_drop={self.point_drop}: expected a share in [0, 1)")


def mirror(metric: np.ndarray) -> np.ndarray:
    """Mirror (..., h, w, 4) metric (x, y, z, r) maps left to right, x negated."""
    mirrored = metric[..., ::-1, :].copy()
    mirrored[..., 0] *= -1
    return mirrored


def drop_points(maps: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """(..., h, w, 4) maps with, with probability ``share``, that share of the filled
    pixels zeroed (all channels: an empty pixel); the input is not changed."""
    if share <= 0 or rng.random() >= share:
        return maps
    filled = maps[..., 3] > 0
    lost = filled & (rng.random(filled.shape) < share)
    return np.where(lost[..., None], np.float32(0), maps)
