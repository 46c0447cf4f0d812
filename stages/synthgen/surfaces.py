"""The world's surfaces: ground plane, far backdrop, and an upright plane per object.

Each surface intersects camera rays analytically (``hit`` gives the ray parameter, which is
the depth along the optical axis, ``inf`` where the ray misses) and maps the 3-D points it
is hit at to texel coordinates. Rendering is then inverse warping: every pixel looks up its
surface's texture, and ground-truth flow follows from the same 3-D points.

Arrays of points and rays are (3, ...) in world coordinates (X right, Y down, Z forward).
"""

from __future__ import annotations

import math

import numpy as np

from stages.synthgen.families import Mask
from stages.synthgen.textures import Texture


def _dot(vector: np.ndarray, field: np.ndarray) -> np.ndarray:
    return np.tensordot(vector, field, axes=1)


def _column(origin: np.ndarray, like: np.ndarray) -> np.ndarray:
    return np.asarray(origin, np.float64).reshape(3, *([1] * (like.ndim - 1)))


class Ground:
    """The road: the plane Y = 0, textured by a tile repeated (mirrored) every ``tile_m``."""

    def __init__(self, texture: Texture, tile_m: float, offset_m: tuple[float, float]):
        self.texture = texture
        self.texel_m = tile_m / texture.shape[1]
        self.offset_m = offset_m

    def hit(self, origin: np.ndarray, rays: np.ndarray, bounded: bool = True) -> np.ndarray:
        down = rays[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -origin[1] / down
        return np.where(down > 1e-9, t, np.inf)

    def texcoords(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (
            (points[0] + self.offset_m[0]) / self.texel_m,
            (points[2] + self.offset_m[1]) / self.texel_m,
        )


class Backdrop:
    """Far scenery on a vertical cylinder of radius ``radius_m`` around the start position.

    A finite distance (rather than infinity) keeps a little translational parallax in the
    backdrop too, as distant buildings have. The photo spans ``arc_rad`` of azimuth and
    ``height_m`` above the ground, bottom row on the ground, mirrored beyond.
    """

    def __init__(
        self, texture: Texture, radius_m: float, arc_rad: float, height_m: float, start_rad: float
    ):
        self.texture = texture
        self.radius = radius_m
        th, tw = texture.shape
        self.texel_rad = arc_rad / tw
        self.texel_h = height_m / th
        self.height_m = height_m
        self.start_rad = start_rad

    def hit(self, origin: np.ndarray, rays: np.ndarray, bounded: bool = True) -> np.ndarray:
        # |o + t d|^2 = R^2 in the ground plane; the camera is inside, take the positive root
        ox, oz = origin[0], origin[2]
        dx, dz = rays[0], rays[2]
        a = dx * dx + dz * dz
        b = ox * dx + oz * dz
        c = ox * ox + oz * oz - self.radius**2
        return (-b + np.sqrt(b * b - a * c)) / a

    def texcoords(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        azimuth = np.arctan2(points[0], points[2])
        return (
            (azimuth - self.start_rad) / self.texel_rad - 0.5,
            (points[1] + self.height_m) / self.texel_h - 0.5,
        )


class Billboard:
    """An object: an upright plane standing on the ground, cut out by its silhouette.

    ``anchor`` is the bottom centre (on the ground) and ``orientation`` the yaw of the
    plane's normal; the plane's horizontal axis is the camera's right for a camera with
    that yaw, so the object's texture is seen unmirrored.
    """

    def __init__(
        self,
        anchor: np.ndarray,
        orientation: float,
        width: float,
        height: float,
        silhouette: Mask,
        texture: Texture,
    ):
        self.anchor = np.asarray(anchor, np.float64)
        self.normal = np.array([math.sin(orientation), 0.0, math.cos(orientation)])
        self.axis = np.array([math.cos(orientation), 0.0, -math.sin(orientation)])
        self.width = width
        self.height = height
        self.silhouette = silhouette
        self.texture = texture

    def local(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(s, e): metres right of the centre line, metres above the ground."""
        return _dot(self.axis, points - _column(self.anchor, points)), -points[1]

    def hit(self, origin: np.ndarray, rays: np.ndarray, bounded: bool = True) -> np.ndarray:
        facing = _dot(self.normal, rays)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = float(self.normal @ (self.anchor - origin)) / facing
        t = np.where((facing > 1e-9) & (t > 0), t, np.inf)
        if not bounded:
            return t
        s, e = self.local(_column(origin, rays) + np.where(np.isfinite(t), t, 0.0) * rays)
        return np.where(self.silhouette(s, e, self.width, self.height), t, np.inf)

    def texcoords(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        th, tw = self.texture.shape
        s, e = self.local(points)
        return (s / self.width + 0.5) * tw - 0.5, (1.0 - e / self.height) * th - 0.5

    def corners(self) -> np.ndarray:
        """The plane's bounding rectangle (3, 4) in the world."""
        half = self.axis * self.width / 2
        up = np.array([0.0, -self.height, 0.0])
        a = self.anchor
        return np.stack([a - half, a + half, a + half + up, a - half + up], axis=1)
