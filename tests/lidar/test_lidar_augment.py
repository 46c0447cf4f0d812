"""LiDAR under training augmentation: crop and flip keep the range maps on the frames'
pixels, point drop touches only the input, and the completion loss sees only filled
targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import gt_masks_artifact, tiny_synth

from stages.artifacts import ArtifactStore
from stages.datasets import open_dataset
from stages.errors import UserError
from stages.frames import box_pixels, crop_resize_labels
from stages.lidar.augment import LidarAugment, drop_points, mirror
from stages.lidar.projection import fill_gaps, normalise, valid
from stages.synthgen import StreetConfig, generate
from stages.train.data import Augment, ClipDataset, collate, draw_geometry
from stages.train.losses import completion_loss

SIZE = (48, 160)
BOX = (0.25, 0.125, 0.5, 0.5)  # y0, x0, height, width as fractions of the frame


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    config = StreetConfig(train_videos=2, val_videos=0, frames=4, height=48, width=160, lidar=True)
    return generate(tmp_path_factory.mktemp("street") / "data", config, workers=1)


def _depth(root, video) -> np.ndarray:
    with np.load(video.extra["dir"] / "lidar.npz") as data:
        return data["depth"]


def test_a_crop_is_projected_onto_exactly_the_pixels_it_cuts(street):
    ds = open_dataset("synth", street)
    video = ds.videos("train")[0]
    depth = _depth(street, video)[1]
    y0, x0, h, w = box_pixels(BOX, *SIZE)
    crop = depth[y0 : y0 + h, x0 : x0 + w]
    seen = (crop > 0) & (crop <= 70)
    # one cell per pixel: every pixel's own point
    cells = ds.dense_lidar(video, 1, (h, w), BOX)
    np.testing.assert_array_equal(valid(cells), seen)
    np.testing.assert_allclose(cells[..., 2][seen], crop[seen], rtol=1e-6)
    # a coarser grid: each cell keeps the nearest of its 2x2 pixels, as labels are cut there
    half = ds.dense_lidar(video, 1, (h // 2, w // 2), BOX)
    blocks = np.where(seen, crop, np.inf).reshape(h // 2, 2, w // 2, 2).min(axis=(1, 3))
    np.testing.assert_allclose(half[..., 2], np.where(np.isinf(blocks), 0, blocks), rtol=1e-6)
    instances = crop_resize_labels(ds.instances(video, 1), BOX, (h, w))
    np.testing.assert_array_equal(instances, ds.instances(video, 1)[y0 : y0 + h, x0 : x0 + w])


def test_mirror_flips_the_map_and_the_world():
    rng = np.random.default_rng(0)
    metric = rng.uniform(1, 5, (2, 3, 4, 4)).astype(np.float32)
    flipped = mirror(metric)
    np.testing.assert_array_equal(flipped[..., 0], -metric[..., ::-1, 0])
    np.testing.assert_array_equal(flipped[..., 1:], metric[..., ::-1, 1:])
    np.testing.assert_array_equal(mirror(flipped), metric)


def test_point_drop_empties_pixels_of_the_input_only():
    rng = np.random.default_rng(0)
    maps = np.where(rng.random((5, 20, 30, 1)) < 0.3, rng.uniform(0.1, 0.9, (5, 20, 30, 4)), 0)
    maps = maps.astype(np.float32)
    before = maps.copy()
    dropped = drop_points(maps, np.random.default_rng(1), 0.999)
    np.testing.assert_array_equal(maps, before)
    filled, kept = valid(maps), valid(dropped)
    assert not (kept & ~filled).any()
    assert kept.sum() < 0.01 * filled.sum()
    assert ((dropped == 0).all(-1) | (dropped == maps).all(-1)).all()  # whole points go
    assert drop_points(maps, np.random.default_rng(1), 0.0) is maps


def test_completion_loss_ignores_empty_targets():
    target = torch.zeros(2, 4, 6, 8)
    target[0, :, 2, 3] = torch.tensor([0.2, 0.4, 0.6, 0.8])
    target[1, 2, 5, 7] = 0.5  # one element of a pixel
    predicted = torch.rand(2, 4, 6, 8)
    filled = target > 0
    expected = ((predicted - target)[filled] ** 2).mean()
    torch.testing.assert_close(completion_loss(predicted, target), expected)
    elsewhere = predicted + 10 * (~filled)  # anything where the target is empty
    torch.testing.assert_close(completion_loss(elsewhere, target), expected)
    assert completion_loss(predicted, torch.zeros_like(target)) == 0


def test_gaps_take_their_nearest_point_within_a_resolution_free_radius():
    """Each empty cell takes its nearest point's values within `spacings` mean point
    spacings (1 / sqrt(filled share)); farther cells stay empty; 0 leaves the map as is."""
    maps = np.zeros((1, 40, 40, 4), np.float32)
    maps[0, 10, 10] = (0.1, 0.2, 0.3, 0.4)
    maps[0, 10, 30] = (0.5, 0.6, 0.7, 0.8)
    maps[0, 30, 10] = (0.9, 0.9, 0.9, 0.9)
    maps[0, 30, 30] = (0.3, 0.3, 0.3, 0.3)
    assert fill_gaps(maps, 0) is maps
    spacing = 1 / np.sqrt(4 / 1600)  # 20 cells
    filled = fill_gaps(maps, 0.25)  # within 5 cells of a point
    np.testing.assert_array_equal(filled[0, 12, 13], maps[0, 10, 10])
    np.testing.assert_array_equal(filled[0, 27, 33], maps[0, 30, 30])
    assert not valid(filled[0, 20, 20]) and not valid(filled[0, 10, 16])
    assert valid(filled[0, 10, 15]) and 0.25 * spacing == 5
    # the same points on a grid twice as fine: the radius doubles with the spacing
    fine = np.zeros((1, 80, 80, 4), np.float32)
    fine[0, 20, 20], fine[0, 20, 60] = maps[0, 10, 10], maps[0, 10, 30]
    fine[0, 60, 20], fine[0, 60, 60] = maps[0, 30, 10], maps[0, 30, 30]
    np.testing.assert_array_equal(valid(fill_gaps(fine, 0.25))[0, ::2, ::2], valid(filled)[0])
    assert not valid(fill_gaps(np.zeros_like(maps), 2.0)).any()  # nothing to fill from


def test_clips_carry_range_maps_cut_and_flipped_with_their_frames(street, tmp_path):
    store = ArtifactStore(tmp_path / "runs")
    masks = gt_masks_artifact(store, street)
    augment = Augment(crop_p=1.0, flip_p=1.0)
    clips = ClipDataset(
        "synth", street, masks, "train", 3, SIZE, (12, 40), augment, 7, lidar=LidarAugment(0.0)
    )
    item = clips[(1, 0)]
    assert item["lidar"].shape == item["lidar_target"].shape == (3, 4, *SIZE)
    # the same draws as the item's: the clip, then its crop box and flip
    rng = np.random.default_rng((7, 0, 1))
    clip = clips.clip(1, rng)
    box, flipped = draw_geometry(rng, augment)
    assert flipped and box != (0.0, 0.0, 1.0, 1.0)
    ds = open_dataset("synth", street)
    video = clips.videos[clip.video]
    for t in range(3):
        metric = mirror(ds.lidar(video, clip.start + t, SIZE, box))
        expected = normalise(metric).transpose(2, 0, 1)
        np.testing.assert_array_equal(item["lidar_target"][t].numpy(), expected)
    torch.testing.assert_close(item["lidar"], item["lidar_target"])  # no drop, no fill asked
    torch.testing.assert_close(item["lidar_weak"], item["lidar_target"])
    filled = ClipDataset(
        "synth", street, masks, "train", 3, SIZE, (12, 40), augment, 7,
        lidar=LidarAugment(0.0, fill=2.0),
    )[(1, 0)]  # fmt: skip
    np.testing.assert_array_equal(filled["lidar_target"], item["lidar_target"])  # still sparse
    np.testing.assert_array_equal(
        filled["lidar"].numpy(),
        fill_gaps(item["lidar_target"].numpy().transpose(0, 2, 3, 1), 2.0).transpose(0, 3, 1, 2),
    )
    has_point = (item["lidar"][:, 3] > 0).float().mean()
    assert has_point < (filled["lidar"][:, 3] > 0).float().mean() < 1  # gaps filled, sky not
    batch = collate([item, clips[(0, 0)]])
    assert batch["lidar"].shape == (2, 3, 4, *SIZE) and batch["frames"].shape[:2] == (2, 3)


def test_a_dataset_without_lidar_is_one_error_line(tmp_path):
    root = tiny_synth(tmp_path / "flat")
    masks = gt_masks_artifact(ArtifactStore(tmp_path / "runs"), root)
    clips = ClipDataset(
        "synth", root, masks, "train", 3, (32, 64), (8, 16), None, 0, lidar=LidarAugment(0.1)
    )
    with pytest.raises(UserError, match="no LiDAR for frame 0"):
        clips[(0, 0)]
