"""KITTI raw LiDAR: calibration parsing in the raw layout, projection onto a camera's grid
(a round trip through a non-identity Velodyne-to-camera transform), the nearest-point
z-buffer, and one-line errors on bad files."""

from __future__ import annotations

import numpy as np
import pytest

from stages.errors import UserError
from stages.lidar.kitti import KittiCalibration, read_velodyne
from stages.lidar.projection import EDGE, normalise, range_map, valid

# 2011_09_26's calibration (KITTI raw), in its own file layout
VELO_TO_CAM = """calib_time: 15-Mar-2012 11:37:16
R: 7.533745e-03 -9.999714e-01 -6.166020e-04 1.480249e-02 7.280733e-04 -9.998902e-01 9.998621e-01 7.523790e-03 1.480755e-02
T: -4.069766e-03 -7.631618e-02 -2.717806e-01
delta_f: 0.000000e+00 0.000000e+00
delta_c: 0.000000e+00 0.000000e+00
"""
CAM_TO_CAM = """calib_time: 09-Jan-2012 13:57:47
corner_dist: 9.950000e-02
R_rect_00: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 7.402527e-03 4.351614e-03 9.999631e-01
P_rect_00: 7.215377e+02 0.000000e+00 6.095593e+02 0.000000e+00 0.000000e+00 7.215377e+02 1.728540e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
S_rect_02: 1.242000e+03 3.750000e+02
P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
S_rect_03: 1.242000e+03 3.750000e+02
P_rect_03: 7.215377e+02 0.000000e+00 6.095593e+02 -3.395242e+02 0.000000e+00 7.215377e+02 1.728540e+02 2.199936e+00 0.000000e+00 0.000000e+00 1.000000e+00 2.729905e-03
"""
GRID = (92, 312)


@pytest.fixture
def day(tmp_path):
    (tmp_path / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM)
    (tmp_path / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM)
    return tmp_path


def _to_velodyne(calib: KittiCalibration, rect: np.ndarray) -> np.ndarray:
    """Rectified camera points -> a Velodyne sweep (N, 4), reflectance 0.5."""
    velo = np.c_[rect, np.ones(len(rect))] @ np.linalg.inv(calib.velo_to_rect).T
    return np.c_[velo[:, :3], np.full(len(rect), 0.5)].astype(np.float32)


def _cells(projection: np.ndarray, size, points: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each point's grid cell (row, col) and whether it falls inside the image (pixel
    centres at integer coordinates: pixel i spans [i - 0.5, i + 0.5))."""
    pix = np.c_[points, np.ones(len(points))] @ projection.T
    u, v = pix[:, 0] / pix[:, 2] + 0.5, pix[:, 1] / pix[:, 2] + 0.5
    inside = (u >= 0) & (u < size[1]) & (v >= 0) & (v < size[0])
    rows = np.floor(v * GRID[0] / size[0]).astype(int)
    cols = np.floor(u * GRID[1] / size[1]).astype(int)
    return rows, cols, inside


def test_calibration_in_the_raw_layout(day):
    calib = KittiCalibration.from_day(day)
    r = np.array(VELO_TO_CAM.split("R: ")[1].split("\n")[0].split(), dtype=float).reshape(3, 3)
    rect = np.array(CAM_TO_CAM.split("R_rect_00: ")[1].split("\n")[0].split(), dtype=float)
    np.testing.assert_allclose(calib.velo_to_rect[:3, :3], rect.reshape(3, 3) @ r)
    assert calib.cameras[2][1] == calib.cameras[3][1] == (375, 1242)
    assert calib.cameras[3][0][0, 3] == pytest.approx(-339.5242)


def test_round_trip_through_the_velodyne_frame(day):
    calib = KittiCalibration.from_day(day)
    rng = np.random.default_rng(0)
    z = rng.uniform(4, 60, 4000)
    rect = np.c_[rng.uniform(-0.9, 0.9, 4000) * z, rng.uniform(-0.2, 0.25, 4000) * z, z]
    sweep = _to_velodyne(calib, rect)
    metric = calib.range_map(sweep, 2, GRID)

    # the points as the sweep file holds them (float32), back in camera coordinates
    rect = (np.c_[sweep[:, :3].astype(np.float64), np.ones(len(sweep))] @ calib.velo_to_rect.T)[
        :, :3
    ]
    rows, cols, inside = _cells(*calib.cameras[2], rect)
    filled = np.zeros(GRID, dtype=bool)
    filled[rows[inside], cols[inside]] = True
    assert filled.sum() > 1000
    assert (valid(metric) == filled).all()  # every point's cell, and nothing else
    # each cell holds the nearest of its own points, in camera coordinates
    for row, col in zip(*np.nonzero(filled), strict=True):
        mine = rect[inside & (rows == row) & (cols == col)]
        nearest = mine[mine[:, 2].argmin()]
        np.testing.assert_allclose(metric[row, col, :3], nearest, rtol=1e-5, atol=1e-4)
        assert metric[row, col, 3] == pytest.approx(np.linalg.norm(nearest), rel=1e-5)


def test_the_nearest_point_wins_whatever_the_order():
    camera = np.array([[100.0, 0, 50, 0], [0, 100, 50, 0], [0, 0, 1, 0]])
    ray = np.array([0.1, -0.05, 1.0])
    for points in (np.stack([10 * ray, 3 * ray, 7 * ray]), np.stack([3 * ray, 10 * ray])):
        metric = range_map(points, camera, (100, 100), (10, 10))
        assert valid(metric).sum() == 1
        np.testing.assert_allclose(metric[valid(metric)][0, :3], 3 * ray, rtol=1e-6)


def test_points_behind_too_far_or_outside_are_dropped():
    camera = np.array([[100.0, 0, 50, 0], [0, 100, 50, 0], [0, 0, 1, 0]])
    points = np.array([[0, 0, -5.0], [0, 0, 80.0], [10.0, 0, 1.0], [0, 0, 5.0]])
    metric = range_map(points, camera, (100, 100), (10, 10))
    assert valid(metric).sum() == 1 and metric[5, 5, 2] == pytest.approx(5.0)


def test_normalised_points_stay_nonzero_and_empty_cells_zero():
    metric = np.zeros((2, 2, 4), dtype=np.float32)
    metric[0, 0] = [-100.0, 0.0, 0.5, 0.5]  # beyond the low ends: clipped, still a point
    metric[1, 1] = [1.0, 2.0, 30.0, np.sqrt(905.0)]
    out = normalise(metric)
    assert (out[valid(metric)] >= EDGE).all() and (out[valid(metric)] <= 1 - EDGE).all()
    assert (out[~valid(metric)] == 0).all()


def test_camera_3_uses_its_own_projection(day):
    calib = KittiCalibration.from_day(day)
    sweep = _to_velodyne(calib, np.array([[0.0, 0.5, 20.0]]))
    left, right = (np.argwhere(valid(calib.range_map(sweep, n, GRID)))[0] for n in (2, 3))
    assert left[0] == right[0] and left[1] > right[1]  # the right camera sees it further left


def test_bad_files_give_one_line_errors(day, tmp_path):
    (day / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM.replace("R_rect_00", "R_rect_0"))
    with pytest.raises(UserError, match=r"calib_cam_to_cam.txt: R_rect_00 is missing"):
        KittiCalibration.from_day(day)
    (day / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM)
    (day / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM.replace("-2.717806e-01", ""))
    with pytest.raises(UserError, match=r"calib_velo_to_cam.txt: T has 2 numbers; expected 3"):
        KittiCalibration.from_day(day)
    with pytest.raises(UserError, match="cannot read the calibration file"):
        KittiCalibration.from_day(tmp_path / "nowhere")
    (tmp_path / "bad.bin").write_bytes(b"\0" * 10)
    with pytest.raises(UserError, match=r"bad.bin: 10 bytes is not a KITTI Velodyne sweep"):
        read_velodyne(tmp_path / "bad.bin")
    with pytest.raises(UserError, match="cannot read the Velodyne sweep"):
        read_velodyne(tmp_path / "missing.bin")


def test_a_sweep_file_reads_back(tmp_path):
    sweep = np.arange(20, dtype=np.float32).reshape(5, 4)
    sweep.tofile(tmp_path / "0000000000.bin")
    np.testing.assert_array_equal(read_velodyne(tmp_path / "0000000000.bin"), sweep)


def _raw_drive(root, frames: int = 3):
    """A KITTI raw recording day with one drive: 2 cameras and a Velodyne sweep per frame."""
    from stages.datasets.imageio import write_png

    day = root / "train" / "2011_09_26"
    drive = day / "2011_09_26_drive_0001_sync"
    day.mkdir(parents=True)
    (day / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM)
    (day / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM)
    calib = KittiCalibration.from_day(day)
    rng = np.random.default_rng(1)
    for cam in ("image_02", "image_03"):
        (drive / cam / "data").mkdir(parents=True)
    (drive / "velodyne_points" / "data").mkdir(parents=True)
    for i in range(frames):
        for cam in ("image_02", "image_03"):
            write_png(drive / cam / "data" / f"{i:010d}.png", np.zeros((375, 1242, 3), np.uint8))
        z = rng.uniform(5, 50, 500)
        rect = np.c_[rng.uniform(-0.8, 0.8, 500) * z, rng.uniform(-0.2, 0.2, 500) * z, z]
        _to_velodyne(calib, rect).tofile(drive / "velodyne_points" / "data" / f"{i:010d}.bin")
    return drive, calib


def test_the_dataset_gives_each_camera_its_lidar_channel(tmp_path):
    from stages.datasets import open_dataset

    drive, calib = _raw_drive(tmp_path)
    ds = open_dataset("kitti", tmp_path)
    left, right = ds.videos("train")
    assert ds.check("train", decode=False)["videos"] == 2
    sweep = read_velodyne(drive / "velodyne_points" / "data" / "0000000001.bin")
    for video, camera in ((left, 2), (right, 3)):
        got = ds.lidar(video, 1, GRID)
        assert valid(got).sum() > 300
        np.testing.assert_array_equal(got, calib.range_map(sweep, camera, GRID))

    (drive / "velodyne_points" / "data" / "0000000002.bin").unlink()
    with pytest.raises(UserError, match=r"2 Velodyne sweeps for the 3 frames .*frame 0000000002"):
        ds.check("train", decode=False)
    with pytest.raises(UserError, match=r"0000000002.bin: cannot read the Velodyne sweep"):
        ds.lidar(left, 2, GRID)


def test_a_drive_without_velodyne_has_no_lidar(tmp_path):
    import shutil

    from stages.datasets import open_dataset

    drive, _ = _raw_drive(tmp_path, frames=1)
    shutil.rmtree(drive / "velodyne_points")
    ds = open_dataset("kitti", tmp_path)
    assert ds.lidar(ds.videos("train")[0], 0, GRID) is None
