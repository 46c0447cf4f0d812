"""A level pinhole camera driving over a ground plane: yaw (pan), forward motion, zoom.

World axes: X right, Y down, Z forward at the first frame; the ground is Y = 0 and the
camera sits at Y = -height. Pixel centres are at integer coordinates (OpenCV's remap
convention), so flow computed here warps images with ``cv2.remap`` directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    """The camera at one frame."""

    focal: float
    cx: float
    cy: float
    position: tuple[float, float, float]
    yaw: float  # radians, positive turns right (towards +X)

    @property
    def rotation(self) -> np.ndarray:
        """Camera-to-world rotation (columns: camera x, y, z axes in the world)."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])

    @property
    def centre(self) -> np.ndarray:
        return np.asarray(self.position, dtype=np.float64)

    def rays(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """World directions (3, ...) through pixels (u, v), scaled to camera depth 1.

        With this scaling the ray parameter of an intersection is the depth along the
        optical axis, so one z-buffer compares all layers.
        """
        cam = np.stack([(u - self.cx) / self.focal, (v - self.cy) / self.focal, np.ones_like(u)])
        return np.tensordot(self.rotation, cam, axes=1)

    def pixel_step(self) -> tuple[np.ndarray, np.ndarray]:
        """How a ray changes per pixel right and per pixel down (rays are affine in u, v)."""
        r = self.rotation
        return r[:, 0] / self.focal, r[:, 1] / self.focal

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel coordinates (u, v) and depth z of world points (3, ...)."""
        rel = points - self.centre.reshape(3, *([1] * (points.ndim - 1)))
        x, y, z = np.tensordot(self.rotation.T, rel, axes=1)
        return self.focal * x / z + self.cx, self.focal * y / z + self.cy, z


def camera_path(
    frames: int,
    *,
    width: int,
    height: int,
    hfov_deg: float,
    horizon: float,
    camera_height: float,
    speed: float,
    yaw_rate: float,
    zoom_rate: float,
) -> list[Camera]:
    """Cameras of a clip: the car turns at ``yaw_rate`` rad/frame and drives ``speed`` m/frame
    along its heading; the focal length grows by ``zoom_rate`` per frame."""
    focal0 = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
    cx, cy = (width - 1) / 2, horizon * height
    cameras = []
    x = z = 0.0
    for t in range(frames):
        yaw = yaw_rate * t
        cameras.append(Camera(focal0 * (1 + zoom_rate) ** t, cx, cy, (x, -camera_height, z), yaw))
        x += speed * math.sin(yaw)
        z += speed * math.cos(yaw)
    return cameras
