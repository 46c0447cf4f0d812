"""TRI-PD's simulator depth as the LiDAR of DIOD-3D (SPEC-xMOD.md section 1).

TRI-PD has no LiDAR; xMOD feeds its 3D network the renderer's dense depth instead, read
beside the frames as Bao et al. distribute them::

    <scene>/depth/camera_0N/<frame>.npz      key ``data``: (H, W) depth along the optical axis, m
    <scene>/calibration/<name>.json          ``names`` (camera names, "camera_0N") and, in the
                                             same order, ``intrinsics`` ({fx, fy, cx, cy}, px)

Every pixel with a depth becomes a point in the camera's coordinates, (x, y, z) =
z K^-1 (u, v, 1) with pixel centres at integer (u, v), and the points reach a model's grid
by the same binning as a KITTI sweep (``projection.depth_on_grid``, ``range_map``'s cells
and winners in linear time: nearest point per cell, nothing beyond 70 m). So a TRI-PD range map means what a KITTI one means, metres on the
fixed normalisation ranges; the authors instead min-max normalise x, y and r per frame,
which makes a value's meaning change from frame to frame. The input is dense, as theirs:
every cell that sees a surface within 70 m holds a point (the dense depth is then its own
completion target). A simulated scan pattern over it is not built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from stages.errors import UserError
from stages.frames import FULL, Box
from stages.lidar.projection import depth_on_grid, pinhole

DEPTH = "depth"
CALIBRATION = "calibration"
DEPTH_KEY = "data"
INTRINSICS = ("fx", "fy", "cx", "cy")


@dataclass(frozen=True)
class PinholeCamera:
    """A TRI-PD camera's intrinsics, pixels."""

    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def projection(self) -> np.ndarray:
        """(3, 4) [K | 0]: camera coordinates -> pixels."""
        return pinhole(self.fx, self.fy, self.cx, self.cy)


def scene_calibration(scene: Path) -> Path:
    """The scene's one calibration JSON (its name is a hash)."""
    found = sorted((scene / CALIBRATION).glob("*.json"))
    if len(found) != 1:
        what = "none" if not found else f"{len(found)} ({found[0].name}, ...)"
        raise UserError(f"{scene / CALIBRATION}: expected one calibration .json, found {what}")
    return found[0]


@lru_cache(maxsize=64)
def read_camera(path: Path, camera: str) -> PinholeCamera:
    """Camera ``camera``'s intrinsics from a TRI-PD calibration JSON."""
    try:
        calibration = json.loads(path.read_text())
        names, intrinsics = calibration["names"], calibration["intrinsics"]
        index = names.index(camera)
        values = intrinsics[index]
        return PinholeCamera(*(float(values[key]) for key in INTRINSICS))
    except OSError as err:
        raise UserError(f"{path}: cannot read the calibration ({err.strerror})") from None
    except ValueError as err:
        raise UserError(f"{path}: not a calibration for {camera} ({err})") from None
    except (KeyError, IndexError, TypeError) as err:
        raise UserError(
            f"{path}: expected 'names' and 'intrinsics' ({', '.join(INTRINSICS)}) for "
            f"{camera}; missing {err}"
        ) from None


def read_depth(path: Path) -> np.ndarray:
    """(H, W) float32 depth, m, from one frame's npz."""
    try:
        with np.load(path) as data:
            depth = np.asarray(data[DEPTH_KEY], dtype=np.float32)
    except FileNotFoundError:
        raise UserError(f"{path}: missing depth map") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable depth map ({err})") from None
    except KeyError:
        raise UserError(f"{path}: no '{DEPTH_KEY}' array (TRI-PD's depth key)") from None
    if depth.ndim != 2:
        raise UserError(f"{path}: depth of shape {depth.shape}; expected (H, W)")
    return depth


def depth_range_map(
    depth_path: Path, camera: PinholeCamera, grid: tuple[int, int], box: Box = FULL
) -> np.ndarray:
    """(h, w, 4) metric (x, y, z, r) of a frame's depth on ``grid`` (over ``box``)."""
    return depth_on_grid(read_depth(depth_path), camera.projection, grid, box=box)
