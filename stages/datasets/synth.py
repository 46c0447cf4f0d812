"""The built-in synthetic dataset: the folder layout plus what only a generator knows.

Each video directory also holds ``meta.json`` (which instance ids move in the world) and
``flow.npz`` (ground-truth flow, key ``forward``, (T-1, 2, H, W) float32, channels dx, dy
in pixels, and key ``backward``, pair t from frame t+1 back to t; sets made before the
generator rendered it have ``forward`` only), written by ``stages.synthgen``; a video of
either world made with ``--lidar`` also holds ``lidar.npz`` (one sweep per frame and the
camera's dense depth: ``stages.synthgen.lidar.Sweeps``).
"""

from __future__ import annotations

import json
import zipfile

import numpy as np

from stages.datasets.base import Video
from stages.datasets.folder import FolderDataset
from stages.errors import UserError
from stages.frames import FULL, Box
from stages.lidar.projection import depth_on_grid, sweep_on_grid

LIDAR = "lidar.npz"


class SynthDataset(FolderDataset):
    name = "synth"

    def meta(self, video: Video) -> dict:
        path = video.extra["dir"] / "meta.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(
                f"{path}: missing (not a synth dataset? use --dataset folder)"
            ) from None
        except ValueError as exc:
            raise UserError(f"{path}: unreadable JSON ({exc})") from None

    def moving_ids(self, video: Video) -> set[int]:
        return {int(i) for i in self.meta(video)["moving_ids"]}

    def object_groups(self, video: Video) -> dict[str, set[int]]:
        objects = self.meta(video).get("objects", [])
        if not any("lidar_weak" in o for o in objects):
            return {}
        return {"lidar_weak": {int(o["id"]) for o in objects if o.get("lidar_weak")}}

    def conditions(self, video: Video) -> frozenset[str]:
        light = self.meta(video).get("light", {})
        return frozenset({"night"} if light.get("night") else ())

    def gt_flow(self, video: Video) -> np.ndarray:
        return self._gt_flow(video, "forward")

    def gt_backward_flow(self, video: Video) -> np.ndarray | None:
        return self._gt_flow(video, "backward")

    def _gt_flow(self, video: Video, key: str) -> np.ndarray | None:
        """One direction of ``flow.npz``; None for a missing ``backward`` (older sets)."""
        path = video.extra["dir"] / "flow.npz"
        try:
            with np.load(path) as data:
                if key in data:
                    return data[key].astype(np.float32)
        except FileNotFoundError:
            raise UserError(f"{path}: missing ground-truth flow") from None
        if key == "backward":
            return None
        raise UserError(f"{path}: no '{key}' array")

    def lidar(
        self, video: Video, index: int, grid: tuple[int, int], box: Box = FULL
    ) -> np.ndarray | None:
        found = self._lidar(video, f"sweep_{index:06d}", "lidar_to_camera", "camera")
        if found is None:
            return None
        sweep, lidar_to_camera, camera = found
        size = self.frame_size(video)
        return sweep_on_grid(sweep, lidar_to_camera, _at(camera, index), size, grid, box)

    def dense_lidar(
        self, video: Video, index: int, grid: tuple[int, int], box: Box = FULL
    ) -> np.ndarray | None:
        found = self._lidar(video, "depth", "camera")
        if found is None:
            return None
        depth, camera = found  # every pixel that sees a surface, as a point
        return depth_on_grid(depth[index], _at(camera, index), grid, box=box)

    def _lidar(self, video: Video, *keys: str) -> list[np.ndarray] | None:
        """Members of the video's ``lidar.npz``; None if it has none."""
        path = video.extra["dir"] / LIDAR
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return [data[key] for key in keys]
        except KeyError as exc:
            raise UserError(f"{path}: no {exc.args[0]} (a LiDAR/frame count mismatch?)") from None
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise UserError(f"{path}: unreadable LiDAR file ({exc})") from None

    def _check_video(self, video: Video, decode: bool) -> tuple[int, int]:
        size = super()._check_video(video, decode)
        path = video.extra["dir"] / LIDAR
        if path.is_file():
            try:
                with np.load(path) as data:
                    sweeps = sum(key.startswith("sweep_") for key in data.files)
                    depth = data["depth"].shape if "depth" in data.files else None
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                raise UserError(f"{path}: unreadable LiDAR file ({exc})") from None
            if sweeps != len(video) or depth != (len(video), *size):
                raise UserError(
                    f"{path}: {sweeps} LiDAR sweeps and depth {depth} for the {len(video)} "
                    f"frames of {size[0]}x{size[1]} in {video.extra['dir']}; expected one each"
                )
        return size


def _at(camera: np.ndarray, index: int) -> np.ndarray:
    """Frame ``index``'s (3, 4) projection: one for the video, or one per frame (a zooming
    camera: the flat world's)."""
    return camera[index] if camera.ndim == 3 else camera
