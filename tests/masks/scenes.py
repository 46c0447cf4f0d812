"""Hand-built 3-D scenes with exact flow: a camera driving forward down a street of facades
and poles (depth parallax everywhere), for the motion-mask tests."""

from __future__ import annotations

import numpy as np

H, W = 96, 320
FOCAL = (W / 2) / np.tan(np.radians(81.0 / 2))  # KITTI's field of view
CAMERA_HEIGHT = 1.65


def boxes(facade_x: float, poles: list[tuple[float, float]]) -> list[tuple]:
    """Static world: (x0, x1, z0, z1, top height) boxes standing on the road, in metres
    (x right, z ahead): two facades running along the street and thin poles at the curb."""
    far = 400.0
    walls = [
        (-facade_x - 20, -facade_x, -5.0, far, 20.0),
        (facade_x, facade_x + 20, -5.0, far, 20.0),
    ]
    return walls + [(x - 0.1, x + 0.1, z - 0.1, z + 0.1, 5.0) for x, z in poles]


def ray_cast(boxes: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """Depth Z (H, W) and the index of the box hit (-1: road, -2: sky) from a camera at
    the origin looking down +z, CAMERA_HEIGHT above the road."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    dx, dy = (xs - (W - 1) / 2) / FOCAL, (ys - (H - 1) / 2) / FOCAL  # dy > 0: downwards
    depth = np.full((H, W), np.inf)
    hit = np.full((H, W), -2)
    road = np.where(dy > 1e-6, CAMERA_HEIGHT / np.maximum(dy, 1e-6), np.inf)
    depth, hit = np.where(road < depth, road, depth), np.where(road < depth, -1, hit)
    for index, (x0, x1, z0, z1, top) in enumerate(boxes):
        # slab intersection of the ray p = z * (dx, dy, 1) with the box, height 0..top
        with np.errstate(divide="ignore", invalid="ignore"):
            tx = np.sort(np.stack([x0 / dx, x1 / dx]), axis=0)
            ty = np.sort(np.stack([(CAMERA_HEIGHT - top) / dy, CAMERA_HEIGHT / dy]), axis=0)
        tx = np.where(np.isnan(tx), np.inf, tx)
        ty = np.where(np.isnan(ty), np.inf, ty)
        tx[0] = np.where((dx == 0) & (x0 < 0) & (x1 > 0), -np.inf, tx[0])
        near = np.maximum.reduce([tx[0], ty[0], np.full_like(dx, z0)])
        exit_ = np.minimum.reduce([tx[1], ty[1], np.full_like(dx, z1)])
        hits = (near <= exit_) & (near > 0.1) & (near < depth)
        depth, hit = np.where(hits, near, depth), np.where(hits, index, hit)
    return depth, hit


def forward_flow(depth: np.ndarray, step: float, own: np.ndarray | None = None) -> np.ndarray:
    """Flow (2, H, W) of points at ``depth`` when the camera moves ``step`` m forward;
    points where ``own`` is True move forward with it (their flow is zero)."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    px, py = (xs - (W - 1) / 2), (ys - (H - 1) / 2)
    finite = np.isfinite(depth)
    scale = np.ones_like(depth)  # points at infinity (the sky) do not move
    scale[finite] = depth[finite] / np.maximum(depth[finite] - step, 1e-3)
    flow = np.stack([px * (scale - 1), py * (scale - 1)])
    if own is not None:
        flow[:, own] = 0.0
    return flow.astype(np.float32)


class Pairs:
    """A video whose every pair has the same forward flow (a ``geometric.FlowPairs``)."""

    def __init__(self, flow: np.ndarray, frames: int = 4):
        self.flow, self.num_frames, self.has_backward = flow, frames, False

    def forward(self, t: int) -> np.ndarray:
        return self.flow

    def backward(self, t: int) -> None:
        return None

    def image(self, t: int) -> None:
        return None


STREET = boxes(6.0, [(-4.5, 8.0), (4.5, 11.0), (-4.5, 20.0), (4.5, 30.0), (4.5, 45.0)])


def backward_flow(boxes: list[tuple], step: float, moving: int | None = None) -> np.ndarray:
    """Exact flow from the second frame back to the first when the camera moved ``step`` m
    forward: the second frame's scene (static boxes ``step`` m nearer; box ``moving``, which
    drives with the camera, where it was) seen by a camera moving ``step`` m back."""
    shifted = [
        b if i == moving else (b[0], b[1], b[2] - step, b[3] - step, b[4])
        for i, b in enumerate(boxes)
    ]
    depth, hit = ray_cast(shifted)
    own = hit == moving if moving is not None else None
    return forward_flow(depth, -step, own=own)
