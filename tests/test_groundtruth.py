"""GT preparation per protocol (stages.groundtruth): the resize semantics, TRI-PD's crop and
per-video relabelling (with its order effect), KITTI's raw values."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stages.datasets import Dataset, Video
from stages.datasets.imageio import write_png
from stages.groundtruth import (
    TRIPD_CROP_ROWS,
    cv2_nearest,
    floor_nearest,
    kitti_raw_gt,
    relabel_by_size,
    tripd_paper_gt,
)
from stages.metrics import resize_nearest


def _coded(h: int, w: int) -> np.ndarray:
    """Every pixel its own id, so a resize shows which source pixel it sampled."""
    return np.arange(h * w, dtype=np.int64).reshape(h, w)


def test_floor_nearest_is_torch_nearest_on_tripd_sizes():
    src = _coded(480, 968)
    out = floor_nearest(src, (120, 242))
    assert np.array_equal(out, src[::4, ::4])  # top-left of every 4 x 4 block
    torch_out = F.interpolate(torch.from_numpy(src).double()[None, None], (120, 242))
    assert np.array_equal(out, torch_out[0, 0].long().numpy())
    assert not np.array_equal(out, resize_nearest(src, (120, 242)))  # ours samples centres


@pytest.mark.parametrize("src", [(375, 1242), (370, 1224), (1216, 1936)])
def test_cv2_nearest_samples_floor_of_i_times_the_double_inverse_scale(src):
    """OpenCV's INTER_NEAREST: source index floor(i * (1 / (h / H))) in double precision,
    which differs from floor(i * H / h) where rounding lands below an integer."""
    h, w = (92, 312) if src[0] < 1000 else (608, 968)
    coded = _coded(*src)
    rows = np.floor(np.arange(h) * (1.0 / (h / src[0]))).astype(np.int64)
    cols = np.floor(np.arange(w) * (1.0 / (w / src[1]))).astype(np.int64)
    assert np.array_equal(cv2_nearest(coded, (h, w)), coded[rows[:, None], cols[None, :]])
    if src == (370, 1224):  # row 46: 46 * 370 / 92 = 185, but 46 * (1 / (92 / 370)) < 185
        assert rows[46] == 184 and 46 * 370 // 92 == 185
    assert cv2_nearest(coded, (h, w))[0, 0] == 0  # top-left aligned, not centred


def test_relabel_order_effect_and_threshold():
    """Labels in order of first passing 500 px; before that, and forever for ids that never
    pass, background. Exactly 500 px is not more than 500."""
    frames = []
    for sizes in ({7: 400, 9: 600}, {7: 501, 5: 500}, {7: 100, 9: 10, 5: 500}):
        frame = np.zeros(2000, np.int64)
        start = 0
        for ident, n in sizes.items():
            frame[start : start + n] = ident
            start += n
        frames.append(frame.reshape(40, 50))
    mapping = {0: 0}
    out = list(relabel_by_size(iter(frames), mapping))
    assert mapping == {0: 0, 9: 1, 7: 2}
    assert set(np.unique(out[0])) == {0, 1} and (out[0] == 1).sum() == 600  # 7 still 0
    assert (out[1] == 2).sum() == 501 and not (out[1] == 1).any()  # 5 (500 px) stays 0
    assert (out[2] == 2).sum() == 100 and (out[2] == 1).sum() == 10  # labels stick
    assert (out[2] == 0).sum() == 2000 - 110


class _Maps(Dataset):
    """A dataset whose GT maps are given as arrays (one video 'v')."""

    name = "fake"

    def __init__(self, root, maps: list[np.ndarray], moving: set[int] | None = None):
        super().__init__(root)
        self.maps, self.moving = maps, moving

    def _list_videos(self, split: str) -> list[Video]:
        return [Video("v", split, tuple(f"{i:03d}" for i in range(len(self.maps))))]

    def instances(self, video: Video, index: int) -> np.ndarray:
        return self.maps[index]

    def moving_ids(self, video: Video) -> set[int] | None:
        return self.moving


def test_tripd_paper_gt_halves_crops_relabels_and_resizes(tmp_path):
    # source frames of 2 * (128 + 40) x 2 * 64: half size 168 x 64, cropped 40 x 64
    h, w = 2 * (TRIPD_CROP_ROWS + 40), 128
    top = 2 * TRIPD_CROP_ROWS  # first source row of the scored region
    maps = []
    for t in range(3):
        gt = np.zeros((h, w), np.int64)
        gt[:top, :] = 11  # only in the cropped top: never scored, never labelled
        gt[top : top + 40, :60] = 22  # 20 x 30 = 600 px at half size: labelled at once
        if t >= 1:
            gt[top + 40 : top + 80, 60:120] = 33  # 20 x 30 at half size, from frame 1
        gt[top + 60 : top + 80, :2] = 44  # 10 x 1 px at half size: never an object
        maps.append(gt)
    ds = _Maps(tmp_path, maps, moving={33, 44, 11})
    video = ds.videos("val")[0]
    got = tripd_paper_gt(ds, video, [2, 0], (10, 16))  # 40 x 64 -> 10 x 16, order kept
    assert got.maps.shape == (2, 10, 16)
    expected = np.zeros((3, 10, 16), np.int64)  # source pixel (4i, 4j) of the 40 x 64 map
    expected[:, :5, :8] = 1  # 22: rows 0-19, cols 0-29 of the half map -> i < 5, j < 8
    expected[1:, 5:10, 8:15] = 2  # 33: rows 20-39, cols 30-59 -> i >= 5, 8 <= j < 15
    assert np.array_equal(got.maps, expected[[2, 0]])
    assert got.moving_ids == {2}  # 33 -> 2; 44 and 11 never became objects


def test_kitti_raw_gt_keeps_stuff_as_gt_ids(tmp_path):
    raw = np.zeros((16, 32), np.uint16)
    raw[:8] = 23 * 256  # sky: class 23, instance 0 ("stuff")
    raw[8:, :16] = 7 * 256  # road
    raw[10:14, 20:28] = 26 * 256 + 1  # a car
    raw[14:, 28:] = 0  # unlabeled
    path = tmp_path / "000000.png"
    write_png(path, raw)

    class _Kitti(_Maps):
        def _list_videos(self, split: str) -> list[Video]:
            return [Video("000000", split, ("000000",), instances=(path,))]

    ds = _Kitti(tmp_path, [])
    got = kitti_raw_gt(ds, ds.videos("val")[0], [0], (8, 16))
    assert np.array_equal(
        got.maps[0], cv2.resize(raw, (16, 8), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    )
    assert set(np.unique(got.maps)) == {0, 7 * 256, 23 * 256, 26 * 256 + 1}
    assert got.moving_ids is None
