"""Ray casting a street frame with a z-buffer, shading it, and its exact flow both ways.

Every shape is intersected only with the rays inside its screen rectangle (its bounding
corners projected, clipped at a near plane), the nearest hit wins per pixel, then each
shape shades the pixels it won: mip-mapped texture lookup at the texel footprint of the
pixel (from the exact geometry, so a surface looks the same from frame to frame) and a
sun/ambient term from the surface normal (fixed in the world, so brightness is constant
along the flow). The flow of a pixel is the 3-D point it sees, moved by its shape's motion
to the next frame, projected into the next camera: the flow of the visible surface at t,
defined even where that point is occluded or out of view at t + 1. The backward flow is the
same from frame t + 1 to t, the point moved back by its shape's motion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages.synthgen.street.light import Night
from stages.synthgen.street.primitives import Shape
from stages.synthgen.street.rig import StreetCamera
from stages.synthgen.street.scene import StreetScene
from stages.synthgen.textures import Texture

#: shapes are clipped this close in front of the camera, m
NEAR_M = 0.05
#: brightness in the shade, and added by a surface facing the sun
AMBIENT, SUNLIGHT = 0.55, 0.6
#: pairs of box corners (as indexed by ``primitives._box_corners``) joined by an edge
EDGES = [(i, i | 1 << b) for i in range(8) for b in range(3) if not i >> b & 1]


@dataclass(frozen=True)
class Cast:
    """What each pixel sees: the ray parameter (depth along the optical axis) and the index
    of the shape it hits."""

    depth: np.ndarray  # (H, W) float64
    owner: np.ndarray  # (H, W) int64


@dataclass(frozen=True)
class StreetVideo:
    rgb: np.ndarray  # (T, H, W, 3) uint8
    ids: np.ndarray  # (T, H, W) uint16, 0: not an object; actor k has id k + 1
    flow: np.ndarray  # (T-1, 2, H, W) float32
    backward_flow: np.ndarray  # (T-1, 2, H, W) float32: pair t is frame t+1 -> frame t
    rigid_flow: np.ndarray  # (T-1, 2, H, W) float32, as if every actor stood still
    depth: np.ndarray  # (T, H, W) float32 along the optical axis, m; 0: the sky


def pixel_rays(camera: StreetCamera, height: int, width: int) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return camera.rays(u, v)


def screen_rects(corners: np.ndarray, camera: StreetCamera, height: int, width: int) -> np.ndarray:
    """(n, 4) rows v0, v1 and columns u0, u1 of the pixels that can see each shape, from its
    bounding corners (n, 3, 8) (NaN: unbounded, every pixel); v0 == v1 where none can.

    The corners in front of the near plane and the points where box edges cross it bound
    the part of the box in front of the camera, whose projection bounds the shape's."""
    rel = corners - camera.centre[None, :, None]
    z = np.einsum("i,nij->nj", camera.rotation[:, 2], rel)
    i, j = np.array(EDGES).T
    zi, zj = z[:, i], z[:, j]
    rects = np.zeros((len(corners), 4), np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN corners: unbounded shapes
        crossing = (zi - NEAR_M) * (zj - NEAR_M) < 0
        f = (NEAR_M - zi) / (zj - zi)
        cut = corners[:, :, i] + f[:, None] * (corners[:, :, j] - corners[:, :, i])
        points = np.concatenate([corners, cut], axis=2)
        valid = np.concatenate([z >= NEAR_M, crossing], axis=1)
        u, v, _ = camera.project(np.moveaxis(points, 1, 0))
        u, v = np.where(valid, u, np.nan), np.where(valid, v, np.nan)
        seen = valid.any(axis=1)
        rects[seen, 0] = np.clip(np.floor(np.nanmin(v[seen], axis=1)), 0, height)
        rects[seen, 1] = np.clip(np.ceil(np.nanmax(v[seen], axis=1)) + 1, 0, height)
        rects[seen, 2] = np.clip(np.floor(np.nanmin(u[seen], axis=1)), 0, width)
        rects[seen, 3] = np.clip(np.ceil(np.nanmax(u[seen], axis=1)) + 1, 0, width)
    unbounded = np.isnan(corners).any(axis=(1, 2))
    rects[unbounded] = (0, height, 0, width)
    rects[rects[:, 2] >= rects[:, 3]] = 0
    return rects


def cast(
    shapes: list[Shape], corners: np.ndarray, camera: StreetCamera, height: int, width: int
) -> Cast:
    rays = pixel_rays(camera, height, width)
    origin = camera.centre
    depth = np.full((height, width), np.inf)
    owner = np.full((height, width), -1, np.int64)
    rects = screen_rects(corners, camera, height, width)
    for k in np.flatnonzero(rects[:, 0] < rects[:, 1]):
        v0, v1, u0, u1 = rects[k]
        rect = slice(v0, v1), slice(u0, u1)
        t = shapes[k].hit(origin, rays[(slice(None), *rect)])
        closer = t < depth[rect]
        depth[rect][closer] = t[closer]
        owner[rect][closer] = k
    return Cast(depth, owner)


def _groups(keys: np.ndarray, count: int) -> list[np.ndarray]:
    """Indices of the entries of each key 0..count-1, in order (a stable counting sort)."""
    order = np.argsort(keys, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=count))])
    return [order[bounds[k] : bounds[k + 1]] for k in range(count)]


def shade(shapes: list[Shape], camera: StreetCamera, seen: Cast, sun: np.ndarray) -> np.ndarray:
    """Colour (H, W, 3) float32 in about [0, 1].

    Texture coordinates, footprints and light are computed per shape, then each texture is
    sampled once for all the shapes that share it (facades, trees, poles do), which is
    what keeps a frame of a hundred shapes fast."""
    height, width = seen.depth.shape
    rays = pixel_rays(camera, height, width).reshape(3, -1)
    depth, owner = seen.depth.ravel(), seen.owner.ravel()
    x, y = np.zeros_like(depth), np.zeros_like(depth)
    footprint, light = np.ones_like(depth), np.ones_like(depth)
    step_u, step_v = camera.rotation[:, 0] / camera.focal, camera.rotation[:, 1] / camera.focal
    for k, pixels in enumerate(_groups(owner, len(shapes))):
        if not len(pixels):
            continue
        shape = shapes[k]
        d, t = rays[:, pixels], depth[pixels]
        x[pixels], y[pixels], normal = shape.surface(camera.centre[:, None] + t * d)
        # how far the seen point moves on the surface for a one-pixel step of the ray
        facing = np.einsum("ij,ij->j", normal, d)
        facing = np.where(np.abs(facing) < 1e-6, 1e-6, facing)
        spread = np.zeros_like(t)
        for step in (step_u, step_v):
            moved = t * (step[:, None] - d * (normal.T @ step) / facing)
            spread = np.maximum(spread, np.linalg.norm(moved, axis=0))
        footprint[pixels] = np.minimum(spread / min(shape.look.texel_m), 1e4)
        if shape.lit:
            light[pixels] = AMBIENT + SUNLIGHT * np.maximum(normal.T @ sun, 0.0)
    textures: list[Texture] = []  # distinct, in order of first use
    index: dict[int, int] = {}
    by_shape = np.empty(len(shapes), np.int64)
    for k, shape in enumerate(shapes):
        key = id(shape.look.texture)
        if key not in index:
            index[key] = len(textures)
            textures.append(shape.look.texture)
        by_shape[k] = index[key]
    colour = np.zeros((height * width, 3), np.float32)
    for texture, pixels in zip(textures, _groups(by_shape[owner], len(textures)), strict=True):
        if len(pixels):
            colour[pixels] = texture.sample(x[pixels], y[pixels], footprint[pixels])
    colour *= light[:, None].astype(np.float32)
    return colour.reshape(height, width, 3)


def flow(
    seen: Cast, camera: StreetCamera, next_camera: StreetCamera, motion: np.ndarray
) -> np.ndarray:
    """(2, H, W) float32: where each pixel's 3-D point is in ``next_camera``'s frame, minus
    the pixel. ``motion`` (n, 3) is each shape's displacement between the two frames."""
    height, width = seen.depth.shape
    rays = pixel_rays(camera, height, width)
    points = camera.centre[:, None, None] + seen.depth * rays
    moved = points + np.moveaxis(motion[seen.owner], -1, 0)
    u1, v1 = _project_in_front(next_camera, moved)
    # the point reprojected at t (the pixel, up to rounding): a still camera over a still
    # surface then gives exactly zero flow
    u0, v0 = _project_in_front(camera, points)
    return np.stack([u1 - u0, v1 - v0]).astype(np.float32)


def _project_in_front(camera: StreetCamera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of world points (3, ...), depth clamped at the near plane.

    A point beside the camera can pass the camera plane between two frames (a parked car
    alongside, at speed): it has no image position then, and the clamp sends it far out of
    the image on its own side (thousands of pixels) instead of mirroring it through the
    centre. About 1 pixel in 20,000 of a default set; all of them leave the view."""
    rel = points - camera.centre.reshape(3, *([1] * (points.ndim - 1)))
    x, y, z = np.tensordot(camera.rotation.T, rel, axes=1)
    z = np.maximum(z, NEAR_M)
    return camera.focal * x / z + camera.cx, camera.focal * y / z + camera.cy


def render_street(
    scene: StreetScene, rng: np.random.Generator, noise_std: float, night: Night | None = None
) -> StreetVideo:
    """Every frame of the scene; at ``night`` (street/light.py) darker, flatter and noisier,
    with the day's noise draws unchanged (the night's own come from its stream)."""
    cameras = scene.rig.cameras
    rgb, ids, flows, backward, rigid, depth = [], [], [], [], [], []
    before = None  # the previous frame's camera and its shapes' motion to this frame
    for t, camera in enumerate(cameras):
        frame = scene.frame(t)
        seen = cast(frame.shapes, frame.corners, camera, scene.height, scene.width)
        depth.append(np.where(seen.owner == 0, 0.0, seen.depth).astype(np.float32))  # 0: sky
        colour = shade(frame.shapes, camera, seen, scene.sun)
        if night is not None:
            colour = night.expose(colour)
        levels = colour * 255.0
        noisy = levels + rng.normal(0.0, noise_std, colour.shape)
        if night is not None:
            noisy += night.shot_noise(levels)
        rgb.append(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
        idents = np.array([s.ident for s in frame.shapes], np.uint16)
        ids.append(idents[seen.owner])
        if before is not None:
            backward.append(flow(seen, camera, before[0], -before[1]))
        if t + 1 < len(cameras):
            flows.append(flow(seen, camera, cameras[t + 1], frame.motion))
            rigid.append(flow(seen, camera, cameras[t + 1], frame.rigid_motion))
        before = (camera, frame.motion)
    return StreetVideo(*(np.stack(a) for a in (rgb, ids, flows, backward, rigid, depth)))
