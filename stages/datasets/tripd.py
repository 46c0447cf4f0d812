"""TRI-PD (ParallelDomain) as distributed by Bao et al.

    <root>/<split>/scene_XXXXXX/rgb/camera_0N/*.png
    <root>/<split>/scene_XXXXXX/est_masks/camera_0N/*.png     estimated motion masks
    <root>/<split>/scene_XXXXXX/ari_masks/camera_0N/*.png     GT instances (evaluation)
    <root>/<split>/scene_XXXXXX/moving_masks/camera_0N/*.png  GT moving objects
    <root>/<split>/scene_XXXXXX/depth/camera_0N/*.npz         optional simulator depth and
    <root>/<split>/scene_XXXXXX/calibration/*.json            the cameras' intrinsics: the
                                                              "LiDAR" of DIOD-3D (lidar/tripd.py)

Splits are ``train`` and ``test``; ``val`` reads ``test`` (the 51 evaluation videos) when
no separate val folder exists. Each (scene, camera) is one video. Colour-coded masks are
folded to one id per colour (see ``read_label_map``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.datasets.base import (
    Dataset,
    Video,
    labels_for_frames,
    require_frame_files,
    safe_name,
)
from stages.datasets.imageio import list_images, read_label_map
from stages.errors import UserError
from stages.frames import FULL, Box
from stages.lidar.tripd import (
    DEPTH,
    PinholeCamera,
    depth_range_map,
    read_camera,
    scene_calibration,
)

#: a GT instance moves when, in some frame, more than this share of it lies on moving_masks
MOVING_OVERLAP = 0.5


class TripdDataset(Dataset):
    name = "tripd"
    split_names = ("train", "val", "test")

    def _list_videos(self, split: str) -> list[Video]:
        split_dir = self.root / split
        if split == "val" and not split_dir.is_dir():
            split_dir = self.root / "test"
        if not split_dir.is_dir():
            return []
        videos = []
        for cam_dir in sorted(split_dir.glob("scene_*/rgb/camera_*")):
            scene = cam_dir.parent.parent
            rgb = list_images(cam_dir)
            videos.append(
                Video(
                    name=safe_name(scene.name, cam_dir.name),
                    split=split,
                    frames=tuple(p.stem for p in rgb),
                    rgb=tuple(rgb),
                    instances=labels_for_frames(
                        scene / "ari_masks" / cam_dir.name, rgb, "ari_masks"
                    ),
                    motion=labels_for_frames(scene / "est_masks" / cam_dir.name, rgb, "est_masks"),
                    extra={
                        "dir": cam_dir,
                        "moving_masks": labels_for_frames(
                            scene / "moving_masks" / cam_dir.name, rgb, "moving_masks"
                        ),
                    },
                )
            )
        return videos

    def moving_ids(self, video: Video) -> set[int] | None:
        """The ari_masks ids that lie on the GT moving masks (which carry no ids of their own)
        in at least one frame: the moving/static split of the eval stage's recall."""
        paths = video.extra.get("moving_masks", ())
        if not paths or not video.instances:
            return None
        moving: set[int] = set()
        for i, path in enumerate(paths):
            gt = self.instances(video, i)
            on_mover = read_label_map(path) > 0
            if on_mover.shape != gt.shape:
                raise UserError(
                    f"{path}: moving mask of size {on_mover.shape} for an ari_masks map of "
                    f"size {gt.shape}"
                )
            ids, index = np.unique(gt, return_inverse=True)
            share = np.bincount(index.ravel(), weights=on_mover.ravel()) / np.bincount(
                index.ravel()
            )
            moving.update(int(n) for n in ids[(share > MOVING_OVERLAP) & (ids != 0)])
        return moving

    @staticmethod
    def _depth(video: Video) -> Path | None:
        """The camera's depth folder, when the scene has one."""
        cam_dir = video.extra["dir"]
        folder = cam_dir.parent.parent / DEPTH / cam_dir.name
        return folder if folder.is_dir() else None

    def lidar(
        self, video: Video, index: int, grid: tuple[int, int], box: Box = FULL
    ) -> np.ndarray | None:
        folder = self._depth(video)
        if folder is None:
            return None
        return depth_range_map(
            folder / f"{video.frames[index]}.npz", self._camera(video), grid, box
        )

    def dense_lidar(
        self, video: Video, index: int, grid: tuple[int, int], box: Box = FULL
    ) -> np.ndarray | None:
        """The depth is dense: it is its own completion target."""
        return self.lidar(video, index, grid, box)

    def _check_video(self, video: Video, decode: bool) -> tuple[int, int]:
        size = super()._check_video(video, decode)
        folder = self._depth(video)
        if folder is not None:
            require_frame_files(folder, ".npz", video, "depth maps")
            self._camera(video)  # the calibration is there and has this camera
        return size

    @staticmethod
    def _camera(video: Video) -> PinholeCamera:
        cam_dir = video.extra["dir"]
        return read_camera(scene_calibration(cam_dir.parent.parent), cam_dir.name)
