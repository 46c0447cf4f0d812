"""The masks stage's tunable parameters, free of heavy imports so the CLI can show their
defaults without loading OpenCV or Zarr. Pixel values are at the flow's stored resolution.

The defaults were tuned at 96x320 on synth seed 1 (opencv-dis flow at finest scale 0, and
exact flow), checked on seed 3, favouring precision: only masks matched to a slot
supervise, so a wrong mask costs more than a missed one. Figures: docs/masks.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MotionParams:
    """Camera-motion fit and the moving-pixel thresholds (stages.masks.motion)."""

    camera_model: str = "homography"
    robust: str = "ransac"
    ransac_threshold: float = 1.0
    max_points: int = 1000
    min_residual: float = 3.0
    rel_residual: float = 0.1
    adaptive_k: float = 3.0
    #: width of the window (fraction of the frame width) over which the residual's slowly
    #: varying background part is estimated and removed; 0 disables
    background_window: float = 0.5
    fb_alpha: float = 0.01
    fb_beta: float = 0.5
    seed: int = 0


@dataclass(frozen=True)
class InstanceParams:
    """Component cleaning, splitting and keeping (stages.masks.instances); ``min_area``
    and ``max_masks`` also apply to imported masks."""

    open_radius: int = 1
    close_radius: int = 0
    min_area: int = 50
    #: a component is split in two when 2-means on its flow gives centres at least
    #: ``split_min_distance`` px apart and ``split_ratio`` x their pooled spread
    split_ratio: float = 2.5
    split_min_distance: float = 1.0
    #: a component whose bottom moves within this many px of the ground just below it is
    #: a static object (its parallax, not its own motion, made it stand out); 0 disables
    contact_min_diff: float = 0.6
    contact_gap: int = 2
    contact_band: int = 4
    #: keep a component only if this fraction of it is moving in a flow-warped neighbour
    persist_frac: float = 0.8
    max_masks: int = 32
