"""The camera of a street video: a car driving down the street (speed profile, curves,
stops), or a still camera raised above the sidewalk.

The driving camera's speed follows ``v(tau) = max(0, v0 + a * tau)`` in seconds and its
path is an arc of constant curvature (a straight line when the curvature is 0) centred on
the clip, so it is mid-curve and stays near its lane; positions are integrated exactly,
so the distance between frames is the physical one at the configured frame rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stages.synthgen.camera import Camera
from stages.synthgen.street.config import StreetConfig


@dataclass(frozen=True)
class StreetCamera(Camera):
    """A pinhole camera with a yaw (turning right is positive) and a downward pitch."""

    pitch: float = 0.0  # radians, positive looks down (towards +Y)

    @property
    def rotation(self) -> np.ndarray:
        c, s = math.cos(self.pitch), math.sin(self.pitch)
        tilt = np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])
        return super().rotation @ tilt


@dataclass(frozen=True)
class Rig:
    kind: str  # "driving" or "static"
    cameras: list[StreetCamera]
    #: speed at each frame, m/s
    speeds_mps: list[float]
    accel_mps2: float
    #: signed curve radius, m (positive turns right); None: straight or still
    turn_radius_m: float | None

    @property
    def mean_speed_mps(self) -> float:
        return float(np.mean(self.speeds_mps))

    def displacement(self, t: int) -> np.ndarray:
        """How far the camera moves from frame t to t + 1, m (3,)."""
        return self.cameras[t + 1].centre - self.cameras[t].centre


def intrinsics(config: StreetConfig) -> tuple[float, float, float]:
    """(focal, cx, cy) in pixels: focal length from the horizontal field of view, principal
    point at the image centre (pixel centres at integers)."""
    focal = (config.width / 2) / math.tan(math.radians(config.hfov_deg) / 2)
    return focal, (config.width - 1) / 2, (config.height - 1) / 2


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def distance_travelled(v0: float, accel: float, tau: np.ndarray) -> np.ndarray:
    """Distance covered after ``tau`` seconds from speed v0 at constant acceleration, the car
    stopping (not reversing) when its speed reaches 0."""
    if accel >= 0:
        return v0 * tau + accel * tau**2 / 2
    stop = v0 / -accel
    moving = np.minimum(tau, stop)
    return v0 * moving + accel * moving**2 / 2


def driving_rig(rng: np.random.Generator, config: StreetConfig, lane_x: float) -> Rig:
    """A car in the lane centred at ``lane_x`` driving towards +Z from z = 0."""
    focal, cx, cy = intrinsics(config)
    v0 = 0.0 if rng.random() < config.stopped_fraction else _uniform(rng, config.drive_speed_mps)
    accel = _uniform(rng, config.accel_mps2)
    radius = None
    if rng.random() < config.turn_fraction:
        radius = _uniform(rng, config.turn_radius_m) * (1 if rng.random() < 0.5 else -1)
    pitch = math.radians(_uniform(rng, config.camera_pitch_deg))
    x0 = lane_x + _uniform(rng, (-0.3, 0.3))  # not exactly centred in the lane
    tau = np.arange(config.frames) / config.fps
    s = distance_travelled(v0, accel, tau)
    speeds = np.maximum(v0 + accel * tau, 0.0)
    curvature = 0.0 if radius is None else 1.0 / radius
    heading = curvature * (s - s[-1] / 2)  # mid-curve: the heading is 0 halfway along
    if curvature:
        start = -curvature * s[-1] / 2
        xs = x0 + (np.cos(start) - np.cos(heading)) / curvature
        zs = (np.sin(heading) - np.sin(start)) / curvature
    else:
        xs, zs = np.full_like(s, x0), s
    cameras = [
        StreetCamera(focal, cx, cy, (float(x), -config.camera_height_m, float(z)), float(h), pitch)
        for x, z, h in zip(xs, zs, heading, strict=True)
    ]
    return Rig("driving", cameras, [float(v) for v in speeds], accel, radius)


def static_rig(rng: np.random.Generator, config: StreetConfig, sidewalk_x: float) -> Rig:
    """A still camera above the sidewalk at ``sidewalk_x``, looking along the street and
    across it, down at the road."""
    focal, cx, cy = intrinsics(config)
    height = _uniform(rng, config.static_camera_height_m)
    across = math.radians(_uniform(rng, config.static_camera_yaw_deg))
    yaw = -across if sidewalk_x > 0 else across  # towards the road
    pitch = math.radians(_uniform(rng, config.static_camera_pitch_deg))
    camera = StreetCamera(focal, cx, cy, (sidewalk_x, -height, 0.0), yaw, pitch)
    return Rig("static", [camera] * config.frames, [0.0] * config.frames, 0.0, None)
