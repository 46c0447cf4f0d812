"""The simulated spinning LiDAR of both synthetic worlds (xMOD / DIOD-3D, SPEC-xMOD.md 1).

A roof scanner like KITTI's Velodyne HDL-64E: ``lidar_beams`` lasers at evenly spaced
elevations, fired every ``lidar_azimuth_step_deg`` of azimuth, level with the road (a
camera's pitch does not tilt it) and offset from the camera (``lidar_offset_m``, KITTI's
rig: 27 cm behind and 8 cm above it), so its points see the scene from another place than
the pixels they land on: occlusion edges do not line up, as in real data. Each world traces
the beams through the shapes its camera renders (``scan_surfaces`` here for the flat world,
``street/lidar.py`` for the street). What real sweeps lack is simulated too
(``returns``): no return from the sky or beyond the maximum range, Gaussian range noise,
random dropouts, and objects with weak returns (dark or specular paint; drawn per video)
that lose most of their points.

By default it is the sensor itself, 64 lasers fired every 0.17 degrees, whatever the frame
size: a KITTI sweep reaches a model's grid by binning every point into its cell
(``stages.lidar.projection``), so a synthetic sweep must be the physical one for a set to
show a model what KITTI shows it at the same grid (about 5 % of the pixels filled at KITTI's
own 375x1242, about 40 % at 96x320). Fewer lasers or coarser firings
(``diod data synth --lidar-beams/--lidar-step``) give a sparser sensor, a harder case.

A sweep is stored in the sensor's frame with KITTI's axes (x forward, y left, z up),
beside the 4x4 transform into the camera's coordinates, so it reaches the image grid by
the same projection as a KITTI sweep. The whole scan is taken at one instant (no rolling
shutter over the spin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.datasets.arrays import write_npz
from stages.datasets.synth import LIDAR
from stages.synthgen.camera import Camera
from stages.synthgen.config import VideoSetConfig

#: the LiDAR's random stream, apart from the scene's (0) and the light's (2): turning the
#: LiDAR on changes no other file
LIDAR_STREAM = 1


@dataclass(frozen=True)
class Sensor:
    """The LiDAR of one video: its place relative to the camera, and its beams."""

    #: (3, n) unit beam directions in the sensor frame (x forward, y left, z up)
    beams: np.ndarray
    #: (3, 3) sensor axes -> the car's level frame (X right, Y down, Z forward)
    to_level: np.ndarray
    #: (3,) sensor origin in the car's level frame, relative to the camera, m
    offset: np.ndarray

    @classmethod
    def of(cls, config: VideoSetConfig, hfov_deg: float) -> Sensor:
        """The configured sensor, its beams over a camera's ``hfov_deg`` and a little more."""
        low, high = np.radians(config.lidar_elevation_deg)
        elevation = np.linspace(high, low, config.lidar_beams)
        half = math.radians(hfov_deg / 2 + 5.0)
        step = math.radians(config.lidar_azimuth_step_deg)
        azimuth = np.arange(-half, half + step / 2, step)  # to the right
        el, az = np.meshgrid(elevation, azimuth, indexing="ij")
        beams = np.stack([np.cos(el) * np.cos(az), -np.cos(el) * np.sin(az), np.sin(el)])
        to_level = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
        return cls(beams.reshape(3, -1), to_level, np.asarray(config.lidar_offset_m, float))

    def to_camera(self, level_to_camera: np.ndarray) -> np.ndarray:
        """(4, 4) sensor coordinates -> the camera's (x right, y down, z forward), given the
        (3, 3) rotation from the car's level frame into the camera's (its pitch)."""
        out = np.eye(4)
        out[:3, :3] = level_to_camera @ self.to_level
        out[:3, 3] = level_to_camera @ self.offset
        return out


@dataclass(frozen=True)
class Sweeps:
    """A video's LiDAR: one sweep per frame and what puts them on the image."""

    points: list[np.ndarray]  # per frame (N, 3) float32, sensor frame
    lidar_to_camera: np.ndarray  # (4, 4)
    #: (3, 4) projection onto the frame's pixels, or (T, 3, 4) one per frame (a zooming camera)
    camera: np.ndarray
    #: (ids + 1,) bool: which object ids (as the world's shapes carry them) return weakly
    weak: np.ndarray

    def write(self, folder: Path, depth: np.ndarray) -> None:
        """``lidar.npz``: the sweeps (``sweep_000000``, ...), ``lidar_to_camera``, ``camera``
        and the camera's dense depth (T, H, W), m, 0 where nothing returns."""
        frames = {f"sweep_{t:06d}": p for t, p in enumerate(self.points)}
        write_npz(
            folder / LIDAR,
            lidar_to_camera=self.lidar_to_camera,
            camera=self.camera,
            depth=depth,
            **frames,
        )


def returns(
    distance: np.ndarray,
    surface: np.ndarray,
    idents: np.ndarray,
    config: VideoSetConfig,
    weak: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, measured range) of traced beams: ``distance`` to the nearest hit (m),
    ``surface`` whether a beam hit something that returns (not the sky or far scenery),
    ``idents`` the GT id it hit (0: none), ``weak`` (ids,) which ids return weakly."""
    measured = distance + rng.normal(0.0, config.lidar_range_noise_m, distance.shape)
    near, far = config.lidar_range_m
    keep = surface & (measured >= near) & (measured <= far)
    keep &= rng.random(distance.shape) >= config.lidar_dropout
    keep &= ~(weak[idents] & (rng.random(distance.shape) < config.lidar_weak_dropout))
    return keep, measured


def weak_returns(rng: np.random.Generator, config: VideoSetConfig, ids: int) -> np.ndarray:
    """(ids + 1,) bool: which GT ids (1..ids; 0 is no object) return weakly this video."""
    weak = rng.random(ids + 1) < config.lidar_weak_object_fraction
    weak[0] = False
    return weak


def scan_surfaces(
    sensor: Sensor,
    surfaces: list,
    idents: np.ndarray,
    echoes: np.ndarray,
    camera: Camera,
    config: VideoSetConfig,
    weak: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """(N, 3) float32 points of one sweep of the flat world in the sensor frame: every beam
    against every surface (a frame has a dozen). ``idents`` (surfaces,) the GT id of each
    surface, ``echoes`` (surfaces,) bool whether it returns (the far backdrop does not: it
    stands for scenery beyond the range and the sky). Its camera is level, so the level
    frame is the camera's."""
    origin = camera.centre + camera.rotation @ sensor.offset
    rays = camera.rotation @ sensor.to_level @ sensor.beams  # (3, n) world, unit length
    hits = np.stack([s.hit(origin, rays) for s in surfaces])  # ray parameter = metres
    nearest = np.argmin(hits, axis=0)
    distance = hits[nearest, np.arange(rays.shape[1])]
    surface = echoes[nearest] & np.isfinite(distance)
    keep, measured = returns(distance, surface, idents[nearest], config, weak, rng)
    return (sensor.beams[:, keep] * measured[keep]).T.astype(np.float32)
