"""Motion masks on hand-built flow of 3-D scenes: a camera driving forward past facades,
poles and a road (depth parallax everywhere, nothing moving), with a car ahead that keeps
its distance, and a still camera watching a slow walker. Flow is ray-cast exactly, so
every expected answer follows from geometry alone."""

from __future__ import annotations

import numpy as np
import pytest
from scenes import STREET, H, Pairs, W, forward_flow, ray_cast

from stages.masks.camera import PairGeometry, ParallaxModel
from stages.masks.geometric import GeometricParams, run_masks
from stages.masks.motion import pair_motion
from stages.masks.params import MotionParams

PARALLAX = MotionParams(camera_model="parallax")


def test_forward_driving_past_facades_and_poles_gives_no_mask():
    depth, _ = ray_cast(STREET)
    flow = forward_flow(depth, 1.0)
    assert np.abs(flow).max() > 20  # near facades stream past: strong parallax
    masks = run_masks(Pairs(flow), 0, 4, GeometricParams(PARALLAX), H, W)
    assert masks.max() == 0
    # the homography model sees the facades' parallax as motion
    homography = run_masks(Pairs(flow), 0, 4, GeometricParams(MotionParams()), H, W)
    assert homography.max() > 0


def test_a_car_ahead_keeping_its_distance_is_one_mask():
    car = (-0.9, 0.9, 12.0, 16.5, 1.5)
    depth, hit = ray_cast(STREET + [car])
    on_car = hit == len(STREET)
    flow = forward_flow(depth, 1.0, own=on_car)
    masks = run_masks(Pairs(flow), 0, 4, GeometricParams(PARALLAX), H, W)
    for frame in masks:
        assert frame.max() == 1
        mask = frame == 1
        iou = (mask & on_car).sum() / (mask | on_car).sum()
        assert iou > 0.5


def test_the_epipole_is_the_focus_of_expansion():
    depth, _ = ray_cast(STREET)
    flow = forward_flow(depth, 1.0)
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
