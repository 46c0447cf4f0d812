"""The geometric motion-mask steps on analytic flows, where the right answer is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from stages.errors import UserError
from stages.masks.camera import (
    FundamentalModel,
    HomographyModel,
    PairGeometry,
    make_camera_model,
)
from stages.masks.geometric import GeometricParams, frame_runs, run_masks
from stages.masks.instances import (
    components,
    ground_contact_static,
    number,
    persistent,
    pull,
    push,
    split_by_flow,
)
from stages.masks.motion import flow_trust, landing, local_background, pair_motion
from stages.masks.params import InstanceParams, MotionParams, geometric_instances

H, W = 96, 320
RNG = np.random.default_rng(0)
YS, XS = np.mgrid[0:H, 0:W].astype(np.float32)


def homography_flow(matrix: np.ndarray) -> np.ndarray:
    p = matrix @ np.stack([XS.ravel(), YS.ravel(), np.ones(XS.size, np.float32)])
    return np.stack([(p[0] / p[2]).reshape(H, W) - XS, (p[1] / p[2]).reshape(H, W) - YS]).astype(
        np.float32
    )


CAMERA = np.array([[1.01, 0.002, 1.5], [0.001, 1.01, -0.4], [2e-5, 0.0, 1.0]])


class Scene:
    """A zooming, panning camera over a planar background, and upright boxes standing on a
    'ground' band below them; box ``i`` moves by ``own[i]`` px per frame (0 = static)."""

    def __init__(self, frames: int = 6, boxes=None, backward: bool = True, noise: float = 0.05):
        self.boxes = boxes or [
            # (top, left, height, width, own flow (dx, dy))
            (30, 40, 24, 30, (5.0, 0.0)),
            (40, 150, 20, 24, (-4.0, 1.0)),
            (35, 240, 26, 30, (0.0, 0.0)),
        ]
        self.num_frames = frames
        self.has_backward = backward
        cam = homography_flow(CAMERA)
        back = homography_flow(np.linalg.inv(CAMERA))
        self.fwd, self.bwd, self.gt = [], [], []
        for t in range(frames):
            ids = np.zeros((H, W), np.int64)
            flow, flow_back = cam.copy(), back.copy()
            for i, (top, left, h, w, own) in enumerate(self.boxes, start=1):
                x0, y0 = int(round(left + t * own[0])), int(round(top + t * own[1]))
                ids[y0 : y0 + h, x0 : x0 + w] = i
                flow[:, y0 : y0 + h, x0 : x0 + w] += np.float32(own)[:, None, None]
                # the box's pixels one frame later, and the way back from them
                x1, y1 = int(round(x0 + own[0])), int(round(y0 + own[1]))
                flow_back[:, y1 : y1 + h, x1 : x1 + w] -= np.float32(own)[:, None, None]
            self.gt.append(ids)
            if t < frames - 1:
                self.fwd.append(flow + RNG.normal(0, noise, flow.shape).astype(np.float32))
                self.bwd.append(flow_back + RNG.normal(0, noise, flow.shape).astype(np.float32))

    def forward(self, t: int) -> np.ndarray:
        return self.fwd[t]

    def backward(self, t: int) -> np.ndarray | None:
        return self.bwd[t] if self.has_backward else None

    def image(self, t: int) -> None:
        return None

    def moving(self, t: int) -> set[int]:
        return {i for i, b in enumerate(self.boxes, start=1) if b[4] != (0.0, 0.0)}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max((a | b).sum(), 1)


def test_homography_recovers_camera_flow_and_flags_objects():
    flow = homography_flow(CAMERA)
    flow[:, 40:60, 100:130] += np.array([3.0, -1.0], np.float32)[:, None, None]
    geometry = PairGeometry(flow, np.ones((H, W), bool))
    model = make_camera_model(MotionParams())
    cv2.setRNGSeed(0)
    assert model.fit(geometry)
    residual = model.residual(geometry)
    assert np.abs(model.camera_flow(geometry) - homography_flow(CAMERA)).max() < 0.01
    assert residual[40:60, 100:130].min() > 3.0 and np.median(residual) < 0.01
    lmeds = HomographyModel(MotionParams(robust="lmeds"))
    assert lmeds.fit(geometry) and np.median(lmeds.residual(geometry)) < 0.01


def test_sampson_distance_is_zero_on_epipolar_lines_and_measured_off_them():
    # a camera translating along x over a 3D scene: every static point moves along its row
    depth = 5.0 + 20.0 * RNG.random((H, W)).astype(np.float32)
    flow = np.stack([8.0 / depth, np.zeros_like(depth)]).astype(np.float32)
    flow[1, 10:30, 10:40] = 2.0  # an object moving down: off its epipolar line by 2 px
    geometry = PairGeometry(flow, np.ones((H, W), bool))
    model = FundamentalModel(MotionParams(camera_model="fundamental", ransac_threshold=0.1))
    cv2.setRNGSeed(0)
    assert model.fit(geometry)
    residual = model.residual(geometry)
    assert np.median(residual) < 0.02
    # Sampson splits the error between both images: d / sqrt(2) for a displacement d
    np.testing.assert_allclose(np.median(residual[10:30, 10:40]), 2.0 / np.sqrt(2), rtol=0.05)


def test_unknown_camera_model_and_robust_method_are_user_errors():
    with pytest.raises(
        UserError, match="camera_model affine: expected homography or fundamental or parallax"
    ):
        MotionParams(camera_model="affine")
    with pytest.raises(UserError, match="robust magsac: expected ransac or lmeds"):
        MotionParams(robust="magsac")


def test_forward_backward_check_flags_inconsistent_and_leaving_pixels():
    forward = np.zeros((2, H, W), np.float32)
    forward[0] += 2.0
    backward = -forward.copy()
    backward[:, 20:30, 50:60] = 5.0  # where frame t's pixels land, the way back disagrees
    trust = flow_trust(forward, backward, MotionParams())
    conf = trust.confident
    assert not conf[20:30, 50:58].any()  # these land in the bad block (x + 2 in 50..59)
    assert conf[50:60, 100:200].all()
    assert not conf[:, W - 2 :].any()  # their flow leaves the frame
    assert conf[:, : W - 2].sum() > conf.size * 0.9
    assert trust.noise == 0.0  # most pixels return home exactly
    assert flow_trust(forward, None, MotionParams()).noise is None


def test_flow_noise_is_the_median_round_trip_error():
    forward = np.zeros((2, H, W), np.float32)
    backward = np.zeros_like(forward)
    backward[0] = RNG.choice([-0.3, 0.3], size=(H, W))  # every round trip is off by 0.3 px
    assert flow_trust(forward, backward, MotionParams()).noise == pytest.approx(0.3, abs=1e-4)


def test_local_background_follows_a_smooth_field_but_not_an_object():
    field = np.stack([XS / W * 3.0, (YS > H / 2).astype(np.float32)])  # ramp + a step
    field[:, 20:36, 100:120] += 4.0
    background = local_background(field, np.ones((H, W), bool), 0.5)
    rest = np.abs(field - background)
    inside = rest[:, 24:32, 104:116]
    assert inside.min() > 3.0
    rest[:, 16:40, 96:124] = 0
    assert np.median(rest) < 0.05


def test_pair_motion_marks_moving_boxes_not_static_ones():
    scene = Scene()
    motion = pair_motion(scene.forward(1), scene.backward(1), MotionParams())
    gt = scene.gt[1]
    assert motion.camera_fitted
    assert motion.moving[gt == 1].mean() > 0.8 and motion.moving[gt == 2].mean() > 0.8
    assert motion.moving[gt == 3].mean() < 0.05
    assert motion.moving[gt == 0].mean() < 0.01


def test_split_by_flow_separates_two_objects_not_one_smooth_one():
    labels = np.zeros((H, W), np.int32)
    labels[20:50, 20:80] = 1
    flow = np.zeros((2, H, W), np.float32)
    flow[0, 20:50, 20:50] = 3.0
    flow[0, 20:50, 50:80] = -2.0
    split, boxes = split_by_flow(labels, flow, geometric_instances(InstanceParams()))
    assert len(np.unique(split[20:50, 20:80])) == 2 and len(boxes) == split.max() == 2
    for i, box in enumerate(boxes, start=1):  # each box holds its component
        assert (split[box] == i).sum() == (split == i).sum()
    assert len(np.unique(split[25:45, 25:45])) == 1 and len(np.unique(split[25:45, 55:75])) == 1
    smooth = np.zeros((2, H, W), np.float32)
    smooth[0] = (XS - 50) * 0.02  # a nearer object's expansion: smooth, no two clusters
    assert (split_by_flow(labels, smooth, geometric_instances(InstanceParams()))[0] == labels).all()


def test_ground_contact_tells_static_objects_from_moving_ones():
    labels = np.zeros((H, W), np.int32)
    labels[20:40, 20:40] = 1
    labels[20:40, 100:120] = 2
    flow = np.zeros((2, H, W), np.float32)
    flow[0, :, :60] = 1.5  # object 1 and the ground below it move alike: parallax only
    flow[0, 20:40, 100:120] = 2.0  # object 2 moves over still ground
    boxes = ndimage.find_objects(labels)
    confident = np.ones((H, W), bool)
    static = ground_contact_static(labels, boxes, flow, confident, InstanceParams())
    assert static.tolist() == [False, True, False]
    off = InstanceParams(contact_min_diff=0)
    assert not ground_contact_static(labels, boxes, flow, confident, off).any()
    confident[40:, :] = False  # no trusted ground below: cannot be tested, kept
    assert not ground_contact_static(labels, boxes, flow, confident, InstanceParams()).any()


def test_persistence_number_push_pull():
    labels = np.zeros((H, W), np.int32)
    labels[10:20, 10:20] = 1  # 100 px, supported by the neighbour
    labels[30:50, 30:50] = 2  # 400 px, not supported
    labels[60:62, 60:62] = 3  # 4 px
    neighbour = np.zeros((H, W), np.uint8)
    neighbour[10:20, 12:20] = 1
    support = persistent(labels, [neighbour], 0.8)
    assert support.tolist() == [False, True, False, False]
    assert persistent(labels, [], 0.8).all()
    ids = number(labels, min_area=10, max_masks=5)
    assert ids.dtype == np.uint16 and ids[40, 40] == 1 and ids[15, 15] == 2 and ids[61, 61] == 0
    assert number(labels, min_area=1, max_masks=1).max() == 1
    assert (number(labels, 1, 5, keep=support) == (labels == 1)).all()
    shift = np.zeros((2, H, W), np.float32)
    shift[0] = 5.0
    carried = push(labels.astype(np.uint16), shift)
    assert (carried[10:20, 15:25] == 1).all() and carried[10:20, 10:15].max() == 0
    assert (pull(carried > 0, landing(shift))[10:20, 10:20] == 1).all()


@pytest.mark.parametrize("backward", [True, False])
def test_run_masks_finds_the_moving_boxes_in_every_frame(backward):
    scene = Scene(frames=6, backward=backward)
    out = run_masks(scene, 0, scene.num_frames, GeometricParams(), H, W)
    assert out.shape == (6, H, W) and out.dtype == np.uint16
    for t in range(scene.num_frames):
        ids = set(np.unique(out[t])) - {0}
        assert ids == set(range(1, len(ids) + 1))  # consecutive
        gt = scene.gt[t]
        matched = {i for i in (1, 2) if any(_iou(out[t] == j, gt == i) > 0.7 for j in ids)}
        assert matched == {1, 2}, f"frame {t}"
        assert len(ids) == 2, f"frame {t}: the static box or noise was kept"


def test_runs_are_independent_of_how_the_video_is_cut():
    scene = Scene(frames=7, backward=False)
    whole = run_masks(scene, 0, 7, GeometricParams(), H, W)
    runs = frame_runs(7, 3)
    assert runs == [(0, 3), (3, 7)]  # never a run of the last frame alone
    cut = np.concatenate([run_masks(scene, a, b, GeometricParams(), H, W) for a, b in runs])
    np.testing.assert_array_equal(whole, cut)
    assert frame_runs(1, 16) == [(0, 1)] and frame_runs(5, 2) == [(0, 2), (2, 5)]


def test_one_frame_video_has_empty_masks():
    class OneFrame:
        num_frames = 1
        has_backward = False

    out = run_masks(OneFrame(), 0, 1, GeometricParams(), 8, 8)
    assert out.shape == (1, 8, 8) and not out.any()


def test_no_camera_fit_means_no_masks():
    flow = np.full((2, H, W), 1e4, np.float32)  # everything leaves the frame: nothing to fit
    motion = pair_motion(flow, None, MotionParams())
    assert not motion.camera_fitted and not motion.moving.any()


def test_components_drop_small_regions():
    mask = np.zeros((H, W), np.uint8)
    mask[5:15, 5:15] = 1
    mask[30:32, 30:32] = 1
    labels = components(mask, 50)
    assert labels.max() == 1 and labels[10, 10] == 1 and labels[31, 31] == 0
