"""TRI-PD's simulator depth as LiDAR: back-projection through the scene's calibration onto
any grid, the adapter's lidar/dense_lidar, and one-line errors on bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stages.datasets import open_dataset
from stages.datasets.imageio import write_png
from stages.errors import UserError
from stages.lidar.projection import depth_on_grid, range_map, valid
from stages.lidar.tripd import PinholeCamera, read_camera, read_depth

H, W = 12, 16
CAMERA = {"fx": 20.0, "fy": 22.0, "cx": 7.5, "cy": 5.5}


def _depth(t: int) -> np.ndarray:
    """A wall 10 m ahead, a box at 4 + t m in the middle, sky (0) in the top row, a far
    patch beyond the 70 m limit."""
    depth = np.full((H, W), 10.0, np.float32)
    depth[4:8, 6:10] = 4.0 + t
    depth[0] = 0.0
    depth[10:, :3] = 90.0
    return depth


def _scene(root: Path, frames: int = 2) -> Path:
    scene = root / "train" / "scene_000001"
    for sub in ("rgb", "ari_masks", "depth"):
        (scene / sub / "camera_01").mkdir(parents=True)
    for t in range(frames):
        name = f"{t:018d}"
        write_png(scene / "rgb" / "camera_01" / f"{name}.png", np.zeros((H, W, 3), np.uint8))
        write_png(scene / "ari_masks" / "camera_01" / f"{name}.png", np.zeros((H, W, 3), np.uint8))
        np.savez(scene / "depth" / "camera_01" / f"{name}.npz", data=_depth(t))
    (scene / "calibration").mkdir()
    calibration = {"names": ["camera_05", "camera_01"], "intrinsics": [{}, CAMERA]}
    (scene / "calibration" / "f7ac.json").write_text(json.dumps(calibration))
    return scene


@pytest.mark.parametrize(
    ("grid", "box"),
    [
        ((12, 16), (0.0, 0.0, 1.0, 1.0)),  # one pixel per cell
        ((6, 8), (0.0, 0.0, 1.0, 1.0)),  # 2x2 blocks
        ((5, 7), (0.25, 0.0, 0.75, 1.0)),  # uneven blocks over a crop
    ],
)
def test_depth_on_grid_is_range_map_of_the_back_projected_pixels(grid, box):
    rng = np.random.default_rng(3)
    depth = rng.choice([0.0, 3.0, 3.0, 7.5, 50.0, 90.0], size=(H, W)).astype(np.float32)
    depth += rng.choice([0.0, 0.25], size=(H, W)).astype(np.float32)  # ties and near-ties
    camera = PinholeCamera(**CAMERA).projection
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    points = np.stack(
        [(u - CAMERA["cx"]) * z / CAMERA["fx"], (v - CAMERA["cy"]) * z / CAMERA["fy"], z], 1
    )
    expected = range_map(points, camera, (H, W), grid, box=box)
    np.testing.assert_allclose(
        depth_on_grid(depth, camera, grid, box=box), expected, rtol=1e-6, atol=1e-6
    )
    # a grid finer than the image: each pixel's point in a cell of its own (pixel centres lie
    # on cell edges there, so which of two cells is up to rounding, in range_map too)
    finer = depth_on_grid(depth, camera, (2 * H + 1, 2 * W + 3))
    kept = np.sort(depth[(depth > 0) & (depth <= 70)])
    np.testing.assert_allclose(np.sort(finer[valid(finer)][:, 2]), kept, rtol=1e-6)


def test_the_adapter_reads_the_depth_as_lidar_on_any_grid(tmp_path):
    _scene(tmp_path)
    ds = open_dataset("tripd", tmp_path)
    (video,) = ds.videos("train")
    ds.check("train")
    full = ds.lidar(video, 1, (H, W))
    assert full.shape == (H, W, 4) and not valid(full[0]).any()  # the sky
    assert not valid(full[10:, :3]).any()  # beyond 70 m: dropped
    np.testing.assert_allclose(full[4:8, 6:10, 2], 5.0)  # the box, frame 1
    x, y, z, r = full[2, 12]
    np.testing.assert_allclose([x, y, z], [(12 - 7.5) * 10 / 20, (2 - 5.5) * 10 / 22, 10.0])
    assert r == pytest.approx(np.sqrt(x * x + y * y + z * z))
    half = ds.lidar(video, 1, (H // 2, W // 2))
    np.testing.assert_allclose(half[2:4, 3:5, 2], 5.0)  # the nearest point of each 2x2 cell
    lower = ds.lidar(video, 0, (H // 2, W), (0.5, 0.0, 0.5, 1.0))  # the bottom half
    np.testing.assert_array_equal(lower, ds.lidar(video, 0, (H, W))[H // 2 :])
    np.testing.assert_array_equal(ds.dense_lidar(video, 1, (H, W)), full)


def test_a_scene_without_depth_has_no_lidar(tmp_path):
    scene = _scene(tmp_path)
    for path in (scene / "depth" / "camera_01").iterdir():
        path.unlink()
    (scene / "depth" / "camera_01").rmdir()
    ds = open_dataset("tripd", tmp_path)
    (video,) = ds.videos("train")
    assert ds.lidar(video, 0, (H, W)) is None and ds.dense_lidar(video, 0, (H, W)) is None


def test_bad_files_give_one_line_errors(tmp_path):
    scene = _scene(tmp_path)
    ds = open_dataset("tripd", tmp_path)
    (video,) = ds.videos("train")
    calibration = scene / "calibration" / "f7ac.json"
    calibration.write_text(json.dumps({"names": ["camera_01"], "intrinsics": [{"fx": 1.0}]}))
    read_camera.cache_clear()
    with pytest.raises(UserError, match=r"f7ac.json: expected 'names' and 'intrinsics' .*'fy'"):
        ds.check("train")
    calibration.write_text(json.dumps({"names": ["camera_05"], "intrinsics": [CAMERA]}))
    read_camera.cache_clear()
    with pytest.raises(UserError, match=r"f7ac.json: not a calibration for camera_01"):
        ds.lidar(video, 0, (H, W))
    calibration.unlink()
    with pytest.raises(UserError, match=r"calibration: expected one calibration .json, found none"):
        ds.check("train")
    _scene(tmp_path / "other")
    ds = open_dataset("tripd", tmp_path / "other")
    (video,) = ds.videos("train")
    depth = tmp_path / "other/train/scene_000001/depth/camera_01"
    (depth / f"{1:018d}.npz").unlink()
    with pytest.raises(UserError, match=r"camera_01: 1 depth maps for the 2 frames .* none for"):
        ds.check("train")
    np.savez(depth / f"{1:018d}.npz", depth=_depth(1))
    with pytest.raises(UserError, match=r"npz: no 'data' array"):
        read_depth(depth / f"{1:018d}.npz")
    with pytest.raises(UserError, match=r"npz: missing depth map"):
        read_depth(depth / "nope.npz")
