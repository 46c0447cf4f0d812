"""KITTI raw LiDAR: Velodyne sweeps and the calibration that puts them on a camera's grid.

Raw layout (http://www.cvlibs.net/datasets/kitti/raw_data.php)::

    <date>/calib_velo_to_cam.txt           R (3x3), T (3): Velodyne -> camera 0
    <date>/calib_cam_to_cam.txt            R_rect_00 (3x3); P_rect_0N (3x4), S_rect_0N (W H)
    <date>/<drive>_sync/velodyne_points/data/<frame>.bin   float32 (x, y, z, reflectance)
    <date>/<drive>_sync/image_0N/data/<frame>.png

A point goes to camera N's rectified coordinates by R_rect_00 [R | T], and to its pixels by
P_rect_0N. Each camera gets its own P_rect (the authors project image_03 with camera 2's).
Only points at least ``MIN_FORWARD`` metres ahead of the Velodyne are kept, as the authors
do (the rest are behind or beside the car).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.errors import UserError
from stages.frames import FULL, Box
from stages.lidar.projection import sweep_on_grid

VELO_TO_CAM = "calib_velo_to_cam.txt"
CAM_TO_CAM = "calib_cam_to_cam.txt"
MIN_FORWARD = 2.0  # metres along the Velodyne's x axis


def read_calibration_file(path: Path) -> dict[str, np.ndarray]:
    """``key: numbers`` lines -> {key: float array}; lines that are not numbers (the
    calibration time) are skipped."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise UserError(f"{path}: cannot read the calibration file ({err.strerror})") from None
    values = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            values[key.strip()] = np.array([float(x) for x in rest.split()])
        except ValueError:
            continue
    return values


def _entry(values: dict[str, np.ndarray], key: str, count: int, path: Path) -> np.ndarray:
    found = values.get(key)
    if found is None or found.size != count:
        what = "is missing" if found is None else f"has {found.size} numbers"
        raise UserError(f"{path}: {key} {what}; expected {count} numbers")
    return found


@dataclass(frozen=True)
class KittiCalibration:
    """One recording day's calibration. ``velo_to_rect``: (4, 4) Velodyne -> rectified
    camera coordinates; ``cameras``: camera number -> (P_rect (3, 4), image size (H, W))."""

    velo_to_rect: np.ndarray
    cameras: dict[int, tuple[np.ndarray, tuple[int, int]]]

    @classmethod
    def from_day(cls, day: Path, cameras: tuple[int, ...] = (2, 3)) -> KittiCalibration:
        """The calibration files of a raw recording day folder (``<date>/``)."""
        velo_path, cam_path = Path(day) / VELO_TO_CAM, Path(day) / CAM_TO_CAM
        velo, cam = read_calibration_file(velo_path), read_calibration_file(cam_path)
        velo_to_cam = np.eye(4)
        velo_to_cam[:3, :3] = _entry(velo, "R", 9, velo_path).reshape(3, 3)
        velo_to_cam[:3, 3] = _entry(velo, "T", 3, velo_path)
        rect = np.eye(4)
        rect[:3, :3] = _entry(cam, "R_rect_00", 9, cam_path).reshape(3, 3)
        found = {}
        for n in cameras:
            projection = _entry(cam, f"P_rect_0{n}", 12, cam_path).reshape(3, 4)
            width, height = _entry(cam, f"S_rect_0{n}", 2, cam_path)
            found[n] = (projection, (int(round(height)), int(round(width))))
        return cls(rect @ velo_to_cam, found)

    def range_map(
        self, sweep: np.ndarray, camera: int, grid: tuple[int, int], box: Box = FULL
    ) -> np.ndarray:
        """(h, w, 4) metric (x, y, z, r) of a Velodyne ``sweep`` (N, 4) on a grid over the
        part ``box`` of camera ``camera``'s image (``projection.range_map``)."""
        if camera not in self.cameras:
            raise UserError(
                f"camera {camera}: the calibration holds cameras {sorted(self.cameras)}"
            )
        projection, size = self.cameras[camera]
        ahead = sweep[sweep[:, 0] >= MIN_FORWARD]
        return sweep_on_grid(ahead, self.velo_to_rect, projection, size, grid, box)


def read_velodyne(path: Path) -> np.ndarray:
    """(N, 4) float32 (x, y, z, reflectance) of a KITTI ``.bin`` sweep."""
    path = Path(path)
    try:
        size = path.stat().st_size
        raw = np.fromfile(path, dtype=np.float32)
    except OSError as err:
        raise UserError(f"{path}: cannot read the Velodyne sweep ({err.strerror})") from None
    if size % 16:
        raise UserError(
            f"{path}: {size} bytes is not a KITTI Velodyne sweep "
            "(expected float32 x, y, z, reflectance per point: a multiple of 16 bytes)"
        )
    return raw.reshape(-1, 4)
