"""The street world's LiDAR scan: the shared sensor (``stages/synthgen/lidar.py``) traced
through the shapes the street camera renders, from the sensor's own place. Only the beams
that can land in the camera's view are traced, and per shape only the beams inside its
screen rectangle, as the renderer does for pixels.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stages.synthgen.lidar import Sensor, returns
from stages.synthgen.street.config import StreetConfig
from stages.synthgen.street.render import screen_rects
from stages.synthgen.street.rig import StreetCamera
from stages.synthgen.street.scene import FrameShapes

#: pixels around the image in which beams are still traced: a point seen from the LiDAR
#: just outside the camera's view can land inside it (the two are a few cm apart)
VIEW_MARGIN_PX = 8
#: the sky is always the first shape of a frame (``StreetScene.frame``)
SKY = 0


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
    keep, measured = returns(distance, owner != SKY, idents, config, weak, rng)
    return (local[:, keep] * measured[keep]).T.astype(np.float32)


def level_to_camera(camera: StreetCamera) -> np.ndarray:
    """(3, 3) the car's level frame -> the camera's: its pitch (the same at every frame)."""
    return camera.rotation.T @ _level(camera)
