"""Rendering a scene: z-buffered inverse warping of every surface, and exact flow both ways.

Per frame, every surface is intersected with every pixel's ray (vectorised), the nearest
hit wins (occlusion resolved per pixel, which is painter's order without its failure
cases), and each surface's texture is sampled only where it won. The 3-D point seen at a
pixel, moved by its object's velocity (zero for the world), projected into the next
camera, gives the ground-truth flow: the same geometry that made the images. The backward
flow is the same construction from frame t+1 to t (the point moved back by its velocity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages.synthgen.camera import Camera
from stages.synthgen.scene import Scene

#: surfaces per frame: backdrop, ground, then the objects, object k (id k + 1) at k + 2
FIRST_OBJECT = 2


@dataclass(frozen=True)
class RenderedVideo:
    rgb: np.ndarray  # (T, H, W, 3) uint8
    ids: np.ndarray  # (T, H, W) uint16, 0 = background, object k has id k + 1
    flow: np.ndarray  # (T-1, 2, H, W) float32, dx, dy: where the surface goes next frame
    backward_flow: np.ndarray  # (T-1, 2, H, W) float32: pair t, where frame t+1's surface was at t
    rigid_flow: np.ndarray  # (T-1, 2, H, W) float32: the flow if every object stood still
    depth: np.ndarray  # (T, H, W) float32 along the optical axis, m; 0: the far backdrop


def _footprint(surface, origin, rays, points, step_u, step_v) -> tuple[np.ndarray, ...]:
    """Texture coordinates of the points, and the texels one pixel covers there (how far
    the coordinates move one pixel right or down)."""
    x, y = surface.texcoords(points)
    size = np.zeros_like(x)
    for step in (step_u, step_v):
        shifted = rays + step[:, None]
        t = surface.hit(origin, shifted, bounded=False)
        xs, ys = surface.texcoords(origin[:, None] + np.where(np.isfinite(t), t, 0.0) * shifted)
        size = np.maximum(size, np.where(np.isfinite(t), np.hypot(xs - x, ys - y), 1.0))
    return x, y, size


def render_frame(scene: Scene, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(colour (H, W, 3) float32 in [0, 1], surface index (H, W), seen 3-D points (3, H, W),
    depth along the optical axis (H, W): the rays are scaled to depth 1, so the ray
    parameter of the nearest hit is it)."""
    cam = scene.cameras[t]
    v, u = np.mgrid[0 : scene.height, 0 : scene.width].astype(np.float64)
    rays = cam.rays(u, v)
    origin = cam.centre
    surfaces = [scene.backdrop, scene.ground] + [o.surface(t) for o in scene.objects]
    depth = np.stack([s.hit(origin, rays) for s in surfaces])
    layer = np.argmin(depth, axis=0)
    nearest = np.take_along_axis(depth, layer[None], axis=0)[0]
    points = origin[:, None, None] + nearest * rays
    colour = np.zeros((scene.height, scene.width, 3), np.float32)
    step_u, step_v = cam.pixel_step()
    for k, surface in enumerate(surfaces):
        won = layer == k
        if not won.any():
            continue
        x, y, size = _footprint(surface, origin, rays[:, won], points[:, won], step_u, step_v)
        colour[won] = surface.texture.sample(x, y, size)
    return colour, layer, points, nearest


def render_video(scene: Scene, rng: np.random.Generator, noise_std: float) -> RenderedVideo:
    velocities = np.zeros((FIRST_OBJECT + len(scene.objects), 3))
    for k, obj in enumerate(scene.objects):
        velocities[FIRST_OBJECT + k] = obj.velocity
    rgb, ids, flows, backward, rigid, depth = [], [], [], [], [], []
    previous = None
    for t in range(len(scene.cameras)):
        colour, layer, points, nearest = render_frame(scene, t)
        depth.append(np.where(layer == 0, 0.0, nearest).astype(np.float32))  # 0: the backdrop
        noisy = colour * 255.0 + rng.normal(0.0, noise_std, colour.shape)
        rgb.append(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
        ids.append(np.maximum(layer - (FIRST_OBJECT - 1), 0).astype(np.uint16))
        if previous is not None:
            camera, before = scene.cameras[t], scene.cameras[t - 1]
            flows.append(_flow(camera, *previous, velocities))
            rigid.append(_flow(camera, *previous, np.zeros_like(velocities)))
            backward.append(_flow(before, layer, points, -velocities))
        previous = (layer, points)
    return RenderedVideo(*(np.stack(a) for a in (rgb, ids, flows, backward, rigid, depth)))


def _flow(
    camera: Camera, layer: np.ndarray, points: np.ndarray, displacement: np.ndarray
) -> np.ndarray:
    """Flow of the points seen in one frame (every pixel, visible in the other or not) into
    ``camera``'s frame, each moved by its surface's ``displacement`` (n, 3) on the way."""
    moved = points + np.moveaxis(displacement[layer], -1, 0)
    u1, v1, _ = camera.project(moved)
    v0, u0 = np.mgrid[0 : layer.shape[0], 0 : layer.shape[1]]
    return np.stack([u1 - u0, v1 - v0]).astype(np.float32)
