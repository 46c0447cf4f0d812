"""Every knob of the synthetic generator, with defaults sized for a CPU demo.

Ranges are ``(low, high)`` and sampled uniformly per video (per object where it applies),
unless the name says otherwise. The whole config is written to ``<out>/synth.json`` so a
dataset records how it was made; the same config and seed give byte-identical files.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from stages.errors import UserError

FAMILY_NAMES = ("car", "pedestrian", "truck", "cyclist")


@dataclass(frozen=True)
class VideoSetConfig:
    """What every world shares: the seed, how many videos, how long and how big.

    Worlds subclass it, so these fields come first in every config (and in ``synth.json``).
    """

    seed: int = 0
    #: 96, not fewer: burn-in on 24 videos memorised their motion masks' misses (docs/results.md)
    train_videos: int = 96
    val_videos: int = 8
    frames: int = 12
    height: int = 96
    width: int = 320

    # --- the LiDAR (synthgen/lidar.py), in either world: off unless asked for
    # (``diod data synth --lidar``)
    lidar: bool = False
    #: lasers, evenly spaced in elevation: the HDL-64E's 64 (``diod data synth --lidar-beams``)
    lidar_beams: int = 64
    #: elevation of the lowest and highest laser, degrees above level: the HDL-64E's
    lidar_elevation_deg: tuple[float, float] = (-24.9, 2.0)
    #: azimuth between two firings, degrees: the HDL-64E's 0.17 at 10 Hz (``--lidar-step``)
    lidar_azimuth_step_deg: float = 0.17
    #: where the LiDAR sits relative to the camera, m (right, down, forward; level with the
    #: road): KITTI's rig, 8 cm above and 27 cm behind its cameras
    lidar_offset_m: tuple[float, float, float] = (0.0, -0.08, -0.27)
    #: nearest and farthest return, m: the HDL-64E's blind zone and range
    lidar_range_m: tuple[float, float] = (0.9, 120.0)
    #: range noise (one standard deviation), m: the HDL-64E's 2 cm
    lidar_range_noise_m: float = 0.02
    #: share of returns lost at random (grazing angles, absorbent patches)
    lidar_dropout: float = 0.05
    #: share of objects with weak returns (dark or specular paint, glass), drawn per video
    lidar_weak_object_fraction: float = 0.2
    #: share of a weak object's returns that are lost
    lidar_weak_dropout: float = 0.7

    def __post_init__(self) -> None:
        # TOML and JSON give lists; keep the dataclass hashable and its JSON stable
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self.validate()

    def validate(self) -> None:
        validate_video_set(self)

    def to_json(self) -> dict[str, Any]:
        """Every field; without a LiDAR its settings are left out: the data does not depend
        on them (and a dataset written before they existed stays the same dataset)."""
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in asdict(self).items()
            if self.lidar or not k.startswith("lidar")
        }


@dataclass(frozen=True)
class SynthConfig(VideoSetConfig):
    """The default ``flat`` world: a ground plane, a far backdrop, billboard objects."""

    world: ClassVar[str] = "flat"
    #: objects per video (inclusive range)
    objects: tuple[int, int] = (3, 6)
    #: fraction of a video's objects that stay still in the world (at least ceil(low * n))
    static_fraction: tuple[float, float] = (1 / 3, 2 / 3)
    #: object families to draw from; moving and static objects share the same draw
    families: tuple[str, ...] = FAMILY_NAMES
    #: target object area as a fraction of the frame at the middle frame (log-uniform)
    object_area: tuple[float, float] = (0.006, 0.08)
    #: allowed depth of an object at the middle frame, metres
    object_depth_m: tuple[float, float] = (7.0, 45.0)
    #: closest an object may come to the camera in any frame, metres
    near_m: float = 4.5
    #: part of an object's bounding box that must stay inside the frame in every frame
    min_in_view: float = 0.7
    #: flow of a moving object relative to the flow it would have if static, px per frame
    moving_residual_px: tuple[float, float] = (3.0, 6.0)
    #: fastest an object may move, metres per frame (rejects implausible draws)
    max_object_speed_m: float = 2.5
    #: camera forward translation along its heading, metres per frame
    camera_speed_m: tuple[float, float] = (0.1, 0.5)
    #: camera pan (yaw) rate, degrees per frame
    yaw_rate_deg: tuple[float, float] = (-1.0, 1.0)
    #: relative focal-length change per frame (zoom in > 0)
    zoom_rate: tuple[float, float] = (0.0, 0.01)
    camera_height_m: float = 1.65
    #: horizontal field of view at the first frame, degrees (KITTI's is about 81)
    hfov_deg: float = 81.0
    #: principal point row as a fraction of the height (the horizon: the camera is level)
    horizon: float = 0.45
    #: metres covered by one repeat of the ground texture
    ground_tile_m: float = 12.0
    #: distance of the far backdrop (a cylinder around the start position), metres
    backdrop_radius_m: float = 100.0
    #: Gaussian sensor noise added to every frame, in 8-bit levels
    noise_std: float = 2.0

    def validate(self) -> None:
        validate(self)


def min_static(n_objects: int, low_fraction: float) -> int:
    """Fewest static objects in a video of n (tolerant of 3 * (1/3) rounding)."""
    return math.ceil(n_objects * low_fraction - 1e-9)


def check_range(config: VideoSetConfig, name: str, low: float, high: float | None = None) -> None:
    """A ``(low, high)`` option must be ordered and within [low, high]; the error names it."""
    lo, hi = getattr(config, name)
    if not (lo <= hi) or lo < low or (high is not None and hi > high):
        bound = f"within [{low}, {high}]" if high is not None else f">= {low}"
        raise UserError(f"synth option {name}={[lo, hi]}: expected low <= high, {bound}")


def validate_video_set(config: VideoSetConfig) -> None:
    """Reject counts and sizes no world can honour, naming the option."""
    if config.seed < 0:
        raise UserError(f"--seed {config.seed}: expected a non-negative integer")
    if config.train_videos < 0 or config.val_videos < 0:
        raise UserError("--train-videos/--val-videos: expected counts >= 0")
    if config.train_videos + config.val_videos == 0:
        raise UserError("--train-videos/--val-videos: nothing to generate (both are 0)")
    if config.frames < 2:
        raise UserError(f"--frames {config.frames}: expected at least 2 (flow needs pairs)")
    if config.height < 16 or config.width < 32:
        raise UserError(f"--size {config.height}x{config.width}: expected at least 16x32 pixels")
    check_range(config, "lidar_elevation_deg", -89.0, 89.0)
    check_range(config, "lidar_range_m", 0.0)
    for name in ("lidar_dropout", "lidar_weak_object_fraction", "lidar_weak_dropout"):
        if not 0 <= getattr(config, name) <= 1:
            raise UserError(f"synth option {name}={getattr(config, name)}: expected [0, 1]")
    if not 1 <= config.lidar_beams <= 512:
        raise UserError(f"synth option lidar_beams={config.lidar_beams}: expected 1..512")
    step = config.lidar_azimuth_step_deg
    if not 0.01 <= step <= 10:
        raise UserError(
            f"synth option lidar_azimuth_step_deg={config.lidar_azimuth_step_deg}: "
            "expected 0.01..10 degrees"
        )
    if config.lidar_range_noise_m < 0:
        raise UserError(
            f"synth option lidar_range_noise_m={config.lidar_range_noise_m}: expected >= 0"
        )


def validate(config: SynthConfig) -> None:
    """Reject flat-world configs the generator cannot honour, naming the option."""
    validate_video_set(config)
    check_range(config, "objects", 2)
    check_range(config, "static_fraction", 0.0, 1.0)
    n_lo = config.objects[0]
    if n_lo - min_static(n_lo, config.static_fraction[0]) < 1:
        raise UserError(
            f"synth option static_fraction={list(config.static_fraction)}: leaves no moving "
            f"object in a video of {n_lo} objects"
        )
    unknown = sorted(set(config.families) - set(FAMILY_NAMES))
    if not config.families or unknown:
        raise UserError(
            f"synth option families={list(config.families)}: expected a non-empty subset of "
            f"{', '.join(FAMILY_NAMES)}"
        )
    check_range(config, "object_area", 1e-5, 0.5)
    check_range(config, "object_depth_m", 1.0)
    check_range(config, "moving_residual_px", 0.1)
    check_range(config, "camera_speed_m", 0.0)
    check_range(config, "yaw_rate_deg", -10.0, 10.0)
    check_range(config, "zoom_rate", -0.1, 0.1)
    if not 0 < config.near_m < config.object_depth_m[0]:
        raise UserError(f"synth option near_m={config.near_m}: expected 0 < near_m < depth low")
    if not 0 < config.min_in_view <= 1:
        raise UserError(f"synth option min_in_view={config.min_in_view}: expected (0, 1]")
    if not 0 < config.horizon < 1:
        raise UserError(f"synth option horizon={config.horizon}: expected a fraction in (0, 1)")
    if not 10 <= config.hfov_deg <= 150:
        raise UserError(f"synth option hfov_deg={config.hfov_deg}: expected 10..150 degrees")
    positive = ("max_object_speed_m", "camera_height_m", "ground_tile_m", "backdrop_radius_m")
    for name in positive:
        if getattr(config, name) <= 0:
            raise UserError(f"synth option {name}={getattr(config, name)}: expected > 0")
    if config.backdrop_radius_m <= 2 * config.object_depth_m[1]:
        raise UserError(
            f"synth option backdrop_radius_m={config.backdrop_radius_m}: expected more than "
            f"twice the farthest object depth ({config.object_depth_m[1]} m)"
        )
    if config.noise_std < 0:
        raise UserError(f"synth option noise_std={config.noise_std}: expected >= 0")
