"""Motion masks on hand-built flow of 3-D scenes: a camera driving forward past facades,
poles and a road (depth parallax everywhere, nothing moving), with a car ahead that keeps
its distance, and a still camera watching a slow walker. Flow is ray-cast exactly, so
every expected answer follows from geometry alone."""

from __future__ import annotations

import numpy as np
import pytest

from stages.masks.camera import PairGeometry, ParallaxModel
from stages.masks.geometric import GeometricParams, run_masks
from stages.masks.motion import pair_motion
from stages.masks.params import MotionParams

H, W = 96, 320
FOCAL = (W / 2) / np.tan(np.radians(81.0 / 2))  # KITTI's field of view
CAMERA_HEIGHT = 1.65
PARALLAX = MotionParams(camera_model="parallax")


def _boxes(facade_x: float, poles: list[tuple[float, float]]) -> list[tuple]:
    """Static world: (x0, x1, z0, z1, top height) boxes standing on the road, in metres
    (x right, z ahead): two facades running along the street and thin poles at the curb."""
    far = 400.0
    walls = [
        (-facade_x - 20, -facade_x, -5.0, far, 20.0),
        (facade_x, facade_x + 20, -5.0, far, 20.0),
    ]
    return walls + [(x - 0.1, x + 0.1, z - 0.1, z + 0.1, 5.0) for x, z in poles]


def _ray_cast(boxes: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
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


def _flow(depth: np.ndarray, step: float, own: np.ndarray | None = None) -> np.ndarray:
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


STREET = _boxes(6.0, [(-4.5, 8.0), (4.5, 11.0), (-4.5, 20.0), (4.5, 30.0), (4.5, 45.0)])


def test_forward_driving_past_facades_and_poles_gives_no_mask():
    depth, _ = _ray_cast(STREET)
    flow = _flow(depth, 1.0)
    assert np.abs(flow).max() > 20  # near facades stream past: strong parallax
    masks = run_masks(Pairs(flow), 0, 4, GeometricParams(PARALLAX), H, W)
    assert masks.max() == 0
    # the homography model sees the facades' parallax as motion
    homography = run_masks(Pairs(flow), 0, 4, GeometricParams(MotionParams()), H, W)
    assert homography.max() > 0


def test_a_car_ahead_keeping_its_distance_is_one_mask():
    car = (-0.9, 0.9, 12.0, 16.5, 1.5)
    depth, hit = _ray_cast(STREET + [car])
    on_car = hit == len(STREET)
    flow = _flow(depth, 1.0, own=on_car)
    masks = run_masks(Pairs(flow), 0, 4, GeometricParams(PARALLAX), H, W)
    for frame in masks:
        assert frame.max() == 1
        mask = frame == 1
        iou = (mask & on_car).sum() / (mask | on_car).sum()
        assert iou > 0.5


def test_the_epipole_is_the_focus_of_expansion():
    depth, _ = _ray_cast(STREET)
    flow = _flow(depth, 1.0)
    model = ParallaxModel(PARALLAX)
    assert model.fit(PairGeometry(flow=flow, confident=np.isfinite(depth)))
    assert model.epipole is not None
    assert np.allclose(model.epipole, [(W - 1) / 2, (H - 1) / 2], atol=1.0)


@pytest.mark.parametrize("camera_model", ["homography", "parallax"])
def test_a_one_pixel_walker_on_a_still_camera_is_one_mask(camera_model):
    flow = np.zeros((2, H, W), np.float32)
    backward = np.zeros_like(flow)
    walker = (slice(50, 74), slice(150, 160))  # 24 x 10 px, a person ~15 m away
    flow[0][walker] = 1.0
    backward[0][50:74, 151:161] = -1.0
    params = MotionParams(camera_model=camera_model)
    motion = pair_motion(flow, backward, params)
    assert motion.moving[walker].mean() > 0.8
    assert motion.moving.sum() < 1.5 * 240
