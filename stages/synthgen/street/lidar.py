"""A spinning LiDAR on the street world's car (xMOD / DIOD-3D, SPEC-xMOD.md section 1).

A roof scanner like KITTI's Velodyne HDL-64E: ``lidar_beams`` lasers at evenly spaced
elevations, fired every ``lidar_azimuth_step_deg`` of azimuth, level with the road (the
camera's pitch does not tilt it) and offset from the camera (``lidar_offset_m``, KITTI's
rig: 27 cm behind and 8 cm above it), so its points see the scene from another place than
the pixels they land on: occlusion edges do not line up, as in real data. Each beam is
traced through the same shapes the camera renders. What real sweeps lack is simulated
too: no return from the sky or beyond the maximum range, Gaussian range noise, random
dropouts, and objects with weak returns (dark or specular paint; drawn per video) that
lose most of their points. Only the beams that can land in the camera's view are traced.

By default it is the sensor itself, 64 lasers fired every 0.17 degrees, whatever the frame
size: a KITTI sweep reaches a model's grid by binning every point into its cell
(``stages.lidar.projection``), so a synthetic sweep must be the physical one for a set to
show a model what KITTI shows it at the same grid (about 5 % of the pixels filled at KITTI's
own 375x1242, about 40 % at 96x320). Fewer lasers or coarser firings
(``diod data synth --lidar-beams/--lidar-step``) give a sparser sensor, a harder case.

A sweep is stored in the sensor's frame with KITTI's axes (x forward, y left, z up),
beside the 4x4 transform into the camera's coordinates, so it reaches the image grid by
the same projection as a KITTI sweep (``stages.lidar.projection``). The whole scan is
taken at one instant (no rolling shutter over the spin).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from stages.synthgen.street.config import StreetConfig
from stages.synthgen.street.render import screen_rects
from stages.synthgen.street.rig import StreetCamera
from stages.synthgen.street.scene import FrameShapes

#: pixels around the image in which beams are still traced: a point seen from the LiDAR
#: just outside the camera's view can land inside it (the two are a few cm apart)
VIEW_MARGIN_PX = 8
#: the sky is always the first shape of a frame (``StreetScene.frame``)
SKY = 0


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
    def of(cls, config: StreetConfig) -> Sensor:
        low, high = np.radians(config.lidar_elevation_deg)
        elevation = np.linspace(high, low, config.lidar_beams)
        # azimuth to the right, over the camera's view and a little more
        half = math.radians(config.hfov_deg / 2 + 5.0)
        step = math.radians(config.lidar_azimuth_step_deg)
        azimuth = np.arange(-half, half + step / 2, step)
        el, az = np.meshgrid(elevation, azimuth, indexing="ij")
        beams = np.stack([np.cos(el) * np.cos(az), -np.cos(el) * np.sin(az), np.sin(el)])
        to_level = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
        return cls(beams.reshape(3, -1), to_level, np.asarray(config.lidar_offset_m, float))

    def to_camera(self, camera: StreetCamera) -> np.ndarray:
        """(4, 4) sensor coordinates -> the camera's (x right, y down, z forward): the
        camera is the level frame tilted by its pitch, so this is the same at every frame."""
        tilt = camera.rotation.T @ _level(camera)  # level frame -> camera frame
        out = np.eye(4)
        out[:3, :3] = tilt @ self.to_level
        out[:3, 3] = tilt @ self.offset
        return out


def _level(camera: StreetCamera) -> np.ndarray:
    """(3, 3) the car's level frame -> world: the camera's yaw without its pitch."""
    return dataclasses.replace(camera, pitch=0.0).rotation


def scan(
    sensor: Sensor,
    frame: FrameShapes,
    camera: StreetCamera,
    size: tuple[int, int],
    config: StreetConfig,
    weak: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """(N, 3) float32 points of one sweep in the sensor frame. ``weak`` (ids,) bool: which
    GT ids return weakly; ``size``: the camera's image (H, W)."""
    level = _level(camera)
    origin = camera.centre + level @ sensor.offset
    rays = level @ sensor.to_level @ sensor.beams  # (3, n) world, unit length
    # a camera at the sensor's place, over a slightly larger image, picks the beams (and,
    # per shape, the few beams) worth tracing, as the renderer does for pixels
    height, width = size[0] + 2 * VIEW_MARGIN_PX, size[1] + 2 * VIEW_MARGIN_PX
    view = dataclasses.replace(
        camera,
        cx=camera.cx + VIEW_MARGIN_PX,
        cy=camera.cy + VIEW_MARGIN_PX,
        position=tuple(origin),
    )
    u, v, z = view.project(origin[:, None] + rays)
    with np.errstate(invalid="ignore"):
        inside = (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    local, rays = sensor.beams[:, inside], rays[:, inside]
    u, v = np.floor(u[inside]), np.floor(v[inside])
    distance = np.full(rays.shape[1], np.inf)
    owner = np.full(rays.shape[1], SKY)
    rects = screen_rects(frame.corners, view, height, width)
    for k in np.flatnonzero(rects[:, 0] < rects[:, 1]):
        v0, v1, u0, u1 = rects[k]
        beams = np.flatnonzero((v >= v0) & (v < v1) & (u >= u0) & (u < u1))
        t = frame.shapes[k].hit(origin, rays[:, beams])
        closer = t < distance[beams]
        distance[beams[closer]] = t[closer]
        owner[beams[closer]] = k
    idents = np.array([s.ident for s in frame.shapes])[owner]
    measured = distance + rng.normal(0.0, config.lidar_range_noise_m, distance.shape)
    near, far = config.lidar_range_m
    keep = (owner != SKY) & (measured >= near) & (measured <= far)
    keep &= rng.random(distance.shape) >= config.lidar_dropout
    keep &= ~(weak[idents] & (rng.random(distance.shape) < config.lidar_weak_dropout))
    return (local[:, keep] * measured[keep]).T.astype(np.float32)


def weak_returns(rng: np.random.Generator, config: StreetConfig, ids: int) -> np.ndarray:
    """(ids + 1,) bool: which GT ids (1..ids; 0 is no object) return weakly this video."""
    weak = rng.random(ids + 1) < config.lidar_weak_object_fraction
    weak[0] = False
    return weak
