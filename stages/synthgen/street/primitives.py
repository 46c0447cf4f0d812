"""Ray-traceable shapes of the street world: rectangles, yawed boxes, vertical cylinders,
ellipsoids and the sky dome.

Every shape answers two questions, vectorised over any number of rays:

- ``hit(origin, rays)``: the ray parameter of the nearest intersection in front of the
  camera (``inf`` where the ray misses). Rays are scaled to camera depth 1, so the parameter
  is the depth along the optical axis and one z-buffer compares every shape.
- ``surface(points)``: texture coordinates (in texels) and the outward unit normal at points
  on the shape. The normal serves the shading and the texture footprint of a pixel.

``corners()`` bounds the shape (8 points, box order: bit 0 / 1 / 2 of the index pick the
two ends along three edges) so the renderer intersects only the rays that can hit it, and
``moved(delta)`` is the same shape translated: objects move rigidly, without turning, so a
point of an object and its texture coordinates travel together, which is what makes the
ground-truth flow exact.

World axes: X right, Y down, Z forward; the ground is Y = 0 (up is -Y).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from stages.synthgen.textures import Texture

Array = np.ndarray


def _column(vector: Array, like: Array) -> Array:
    return np.asarray(vector, np.float64).reshape(3, *([1] * (like.ndim - 1)))


def _box_corners(centre: Array, axes: Array, half: Array) -> Array:
    """Corners (3, 8) of a box with the given centre, unit axes (3, 3 columns) and half sizes."""
    signs = np.array([[(i >> b & 1) * 2 - 1 for i in range(8)] for b in range(3)], np.float64)
    return centre[:, None] + axes @ (signs * half[:, None])


@dataclass(frozen=True)
class Look:
    """A mip-mapped texture and the metres one of its texels covers along x and y (radians
    times the dome radius for the sky)."""

    texture: Texture
    texel_m: tuple[float, float]

    @classmethod
    def of(cls, image: Array, texel_m: float, levels: int = 6) -> Look:
        """``image`` drawn at ``texel_m`` metres per pixel; ``Texture`` may round its size to
        fit its pyramid, so the texel size is corrected per axis to keep the metric scale."""
        texture = Texture(np.clip(image, 0.0, 1.0).astype(np.float32), levels=levels)
        th, tw = texture.shape
        return cls(texture, (texel_m * image.shape[1] / tw, texel_m * image.shape[0] / th))


@dataclass(frozen=True)
class Shape(ABC):
    """What every shape carries: its look, and which GT instance it belongs to (0: none);
    what every shape answers: where a ray meets it, and its texture and normal there."""

    look: Look
    ident: int
    #: whether the sun shades it (the sky is not shaded)
    lit: bool

    @abstractmethod
    def moved(self, delta: Array) -> Shape:
        """The same shape translated by ``delta`` (3,) metres."""

    @abstractmethod
    def corners(self) -> Array | None:
        """Bounding corners (3, 8); None: unbounded, test every ray."""

    @abstractmethod
    def hit(self, origin: Array, rays: Array) -> Array:
        """Distance along each ray (3, N) to the shape (inf where it misses)."""

    @abstractmethod
    def surface(self, points: Array) -> tuple[Array, Array, Array]:
        """Texture coordinates (texels along the look's two axes) and normals (3, N) at
        points (3, N) on the shape."""


@dataclass(frozen=True)
class Rect(Shape):
    """A rectangle ``origin + a * u + b * v``, 0 <= a <= size[0], 0 <= b <= size[1], seen
    from both sides; ``normal`` is the side that shading treats as its front."""

    origin: Array
    u: Array
    v: Array
    size: tuple[float, float]
    normal: Array

    def moved(self, delta: Array) -> Rect:
        return dataclasses.replace(self, origin=self.origin + delta)

    def corners(self) -> Array:
        centre = self.origin + self.u * self.size[0] / 2 + self.v * self.size[1] / 2
        axes = np.stack([self.u, self.v, self.normal], axis=1)
        return _box_corners(centre, axes, np.array([self.size[0] / 2, self.size[1] / 2, 0.0]))

    def hit(self, origin: Array, rays: Array) -> Array:
        facing = np.tensordot(self.normal, rays, axes=1)
        ahead = np.abs(facing) > 1e-12
        t = float(self.normal @ (self.origin - origin)) / np.where(ahead, facing, 1.0)
        ahead &= t > 0
        rel = _column(origin - self.origin, rays) + np.where(ahead, t, 0.0) * rays
        a = np.tensordot(self.u, rel, axes=1)
        b = np.tensordot(self.v, rel, axes=1)
        inside = (a >= 0) & (a <= self.size[0]) & (b >= 0) & (b <= self.size[1])
        return np.where(inside & ahead, t, np.inf)

    def surface(self, points: Array) -> tuple[Array, Array, Array]:
        rel = points - _column(self.origin, points)
        a = np.tensordot(self.u, rel, axes=1)
        b = np.tensordot(self.v, rel, axes=1)
        normal = np.broadcast_to(_column(self.normal, points), points.shape)
        return a / self.look.texel_m[0], b / self.look.texel_m[1], normal


@dataclass(frozen=True)
class Plane(Rect):
    """An unbounded horizontal plane at height ``origin[1]`` (the ground under everything)."""

    def corners(self) -> None:
        return None

    def hit(self, origin: Array, rays: Array) -> Array:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.origin[1] - origin[1]) / rays[1]
        return np.where((t > 0) & np.isfinite(t), t, np.inf)


@dataclass(frozen=True)
class Box(Shape):
    """A box standing upright, turned by ``yaw`` about the vertical (its local z axis points
    along the heading (sin yaw, 0, cos yaw)); ``half`` are its half sizes along local
    x (width), y (height), z (length). Textured per face in face-plane metres, the vertical
    texture coordinate running up from the bottom edge (texture row 0 is the ground), so
    one facade texture fits buildings of any height."""

    centre: Array
    half: Array
    yaw: float

    @property
    def axes(self) -> Array:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])

    def moved(self, delta: Array) -> Box:
        return dataclasses.replace(self, centre=self.centre + delta)

    def corners(self) -> Array:
        return _box_corners(self.centre, self.axes, self.half)

    def _local(self, vectors: Array) -> Array:
        return np.tensordot(self.axes.T, vectors, axes=1)

    def hit(self, origin: Array, rays: Array) -> Array:
        o = self._local(origin - self.centre)
        d = self._local(rays)
        near = np.full(rays.shape[1:], -np.inf)
        far = np.full(rays.shape[1:], np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            for k in range(3):
                t1 = (-self.half[k] - o[k]) / d[k]
                t2 = (self.half[k] - o[k]) / d[k]
                near = np.maximum(near, np.minimum(t1, t2))
                far = np.minimum(far, np.maximum(t1, t2))
        return np.where((near <= far) & (near > 0), near, np.inf)

    def surface(self, points: Array) -> tuple[Array, Array, Array]:
        p = self._local(points - _column(self.centre, points))
        face = np.argmax(np.abs(p) / _column(self.half, p), axis=0)  # 0: x faces, 1: y, 2: z
        up = self.half[1] - p[1]  # metres above the bottom
        along = np.where(face == 0, p[2] + self.half[2], p[0] + self.half[0])
        x = along / self.look.texel_m[0]
        y = np.where(face == 1, p[2] + self.half[2], up) / self.look.texel_m[1]
        local_normal = np.zeros_like(p)
        for k in range(3):
            local_normal[k] = np.where(face == k, np.sign(p[k]), 0.0)
        return x, y, np.tensordot(self.axes, local_normal, axes=1)


@dataclass(frozen=True)
class Cylinder(Shape):
    """A vertical cylinder with a top cap: ``base`` is the centre of its bottom, it rises
    ``height`` metres (towards -Y). Poles, trunks, legs and torsos."""

    base: Array
    radius: float
    height: float

    def moved(self, delta: Array) -> Cylinder:
        return dataclasses.replace(self, base=self.base + delta)

    def corners(self) -> Array:
        centre = self.base + np.array([0.0, -self.height / 2, 0.0])
        return _box_corners(
            centre, np.eye(3), np.array([self.radius, self.height / 2, self.radius])
        )

    def hit(self, origin: Array, rays: Array) -> Array:
        ox, oz = origin[0] - self.base[0], origin[2] - self.base[2]
        dx, dz = rays[0], rays[2]
        a = dx * dx + dz * dz
        b = ox * dx + oz * dz
        c = ox * ox + oz * oz - self.radius**2
        disc = b * b - a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
            top = self.base[1] - self.height
            y = origin[1] + side * rays[1]
            side = np.where(
                (disc >= 0) & (side > 0) & (y <= self.base[1]) & (y >= top), side, np.inf
            )
            cap = (top - origin[1]) / rays[1]
            cx = ox + cap * dx
            cz = oz + cap * dz
            on_cap = (cap > 0) & np.isfinite(cap) & (cx * cx + cz * cz <= self.radius**2)
        return np.minimum(side, np.where(on_cap, cap, np.inf))

    def surface(self, points: Array) -> tuple[Array, Array, Array]:
        rel = points - _column(self.base, points)
        on_top = rel[1] <= -self.height + 1e-6 * max(1.0, self.height)
        # azimuth measured from the back (-Z), so the texture seam faces away from a camera ahead
        around = np.arctan2(rel[0], -rel[2]) * self.radius
        x = np.where(on_top, rel[0], around) / self.look.texel_m[0]
        y = np.where(on_top, rel[2], rel[1] + self.height) / self.look.texel_m[1]
        radial = np.hypot(rel[0], rel[2])
        safe = np.maximum(radial, 1e-12)
        normal = np.stack([rel[0] / safe, np.zeros_like(safe), rel[2] / safe])
        normal = np.where(on_top, _column(np.array([0.0, -1.0, 0.0]), points), normal)
        return x, y, normal


@dataclass(frozen=True)
class Ellipsoid(Shape):
    """An axis-aligned ellipsoid: tree crowns, heads."""

    centre: Array
    radii: Array

    def moved(self, delta: Array) -> Ellipsoid:
        return dataclasses.replace(self, centre=self.centre + delta)

    def corners(self) -> Array:
        return _box_corners(self.centre, np.eye(3), self.radii)

    def hit(self, origin: Array, rays: Array) -> Array:
        # scaling space by 1 / radii makes it a unit sphere and keeps the ray parameter
        o = (origin - self.centre) / self.radii
        d = rays / _column(self.radii, rays)
        a = np.einsum("i...,i...->...", d, d)
        b = np.tensordot(o, d, axes=1)
        c = float(o @ o) - 1.0
        disc = b * b - a * c
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        return np.where((disc >= 0) & (t > 0), t, np.inf)

    def surface(self, points: Array) -> tuple[Array, Array, Array]:
        rel = (points - _column(self.centre, points)) / _column(self.radii, points)
        scale = float(np.mean(self.radii))
        x = np.arctan2(rel[0], -rel[2]) * scale / self.look.texel_m[0]
        y = np.arcsin(np.clip(rel[1], -1.0, 1.0)) * scale / self.look.texel_m[1]
        normal = rel / _column(self.radii, points)
        normal = normal / np.maximum(np.linalg.norm(normal, axis=0), 1e-12)
        return x, y, normal


@dataclass(frozen=True)
class Dome(Shape):
    """The sky: a sphere of ``radius`` around the camera, travelling with it (so it is at
    infinity: only the camera's rotation moves it in the image). Textured by azimuth and
    angle from the zenith; ``texel_m`` is radians per texel times the radius."""

    centre: Array
    radius: float

    def moved(self, delta: Array) -> Dome:
        return dataclasses.replace(self, centre=self.centre + delta)

    def corners(self) -> None:
        return None

    def hit(self, origin: Array, rays: Array) -> Array:
        o = origin - self.centre
        a = np.einsum("i...,i...->...", rays, rays)
        b = np.tensordot(o, rays, axes=1)
        c = float(o @ o) - self.radius**2
        return (-b + np.sqrt(b * b - a * c)) / a

    def surface(self, points: Array) -> tuple[Array, Array, Array]:
        rel = (points - _column(self.centre, points)) / self.radius
        azimuth = np.arctan2(rel[0], rel[2]) + math.pi
        from_zenith = np.arcsin(np.clip(rel[1], -1.0, 1.0)) + math.pi / 2
        texel_x, texel_y = self.look.texel_m
        return azimuth * self.radius / texel_x, from_zenith * self.radius / texel_y, -rel
