"""KITTI: raw drives for training, the 200-image instance set for evaluation.

    <root>/train/**/<drive>/image_02/data/*.png      raw drives; image_02 and image_03
                                                    are two videos of one drive
    <root>/train/**/<drive>/image_02/motion/*.png    optional precomputed motion masks
                                                    (e.g. Bao et al.'s raft_seg, renamed)
    <root>/train/**/<drive>/velodyne_points/data/*.bin   optional LiDAR sweeps, one per
                                                    frame, with the raw calibration files
                                                    of the recording day in <drive>/..
    <root>/val/rgb/*.png, <root>/val/instance/*.png  KITTI 2015 instance segmentation
                                                    (training set: 200 images)

Each evaluation image is its own one-frame video (the images are unrelated and sizes vary
slightly), which is how the KITTI protocol scores them: per image.

Instance PNGs are 16-bit with value = semantic_class * 256 + instance; instance 0 marks
"stuff" (road, sky, ...) which is background here. Every other distinct value is one object.
"""

from __future__ import annotations

from functools import cache
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
from stages.frames import FULL, Box
from stages.lidar.kitti import KittiCalibration, read_velodyne

CAMERAS = {"image_02": 2, "image_03": 3}


@cache
def _calibration(day: Path) -> KittiCalibration:
    return KittiCalibration.from_day(day)


def decode_kitti_instances(raw: np.ndarray) -> np.ndarray:
    """16-bit KITTI instance map -> ids 1..N (in order of raw value), 0 = background."""
    raw = raw.astype(np.int64)
    objects = np.where(raw % 256 != 0, raw, 0)
    values, inverse = np.unique(objects, return_inverse=True)
    ids = inverse.reshape(raw.shape)
    return ids if values[0] == 0 else ids + 1


class KittiDataset(Dataset):
    name = "kitti"

    def _list_videos(self, split: str) -> list[Video]:
        if split == "train":
            return self._raw_drives()
        if split == "val":
            return self._instance_set()
        return []

    def _raw_drives(self) -> list[Video]:
        base = self.root / "train"
        if not base.is_dir():
            return []
        videos = []
        for data_dir in sorted(base.glob("**/image_0[23]/data")):
            rgb = list_images(data_dir)
            cam_dir = data_dir.parent
            rel = cam_dir.relative_to(base).parts
            videos.append(
                Video(
                    name=safe_name(*rel),
                    split="train",
                    frames=tuple(p.stem for p in rgb),
                    rgb=tuple(rgb),
                    motion=labels_for_frames(cam_dir / "motion", rgb, "motion"),
                    extra={"dir": cam_dir, "camera": CAMERAS[cam_dir.name]},
                )
            )
        return videos

    def _instance_set(self) -> list[Video]:
        rgb_dir = self.root / "val" / "rgb"
        if not rgb_dir.is_dir():
            return []
        rgb = list_images(rgb_dir)
        inst = labels_for_frames(self.root / "val" / "instance", rgb, "instance")
        return [
            Video(
                name=p.stem,
                split="val",
                frames=(p.stem,),
                rgb=(p,),
                instances=(inst[i],) if inst else (),
                extra={"dir": rgb_dir},
            )
            for i, p in enumerate(rgb)
        ]

    @staticmethod
    def _velodyne(video: Video) -> Path | None:
        sweeps = video.extra["dir"].parent / "velodyne_points" / "data"
        return sweeps if video.split == "train" and sweeps.is_dir() else None

    def lidar(
        self, video: Video, index: int, grid: tuple[int, int], box: Box = FULL
    ) -> np.ndarray | None:
        sweeps = self._velodyne(video)
        if sweeps is None:
            return None
        calibration = _calibration(video.extra["dir"].parent.parent)
        sweep = read_velodyne(sweeps / f"{video.frames[index]}.bin")
        return calibration.range_map(sweep, video.extra["camera"], grid, box)

    def _check_video(self, video: Video, decode: bool) -> tuple[int, int]:
        size = super()._check_video(video, decode)
        sweeps = self._velodyne(video)
        if sweeps is not None:
            require_frame_files(sweeps, ".bin", video, "Velodyne sweeps")
            _calibration(video.extra["dir"].parent.parent)  # its files are there and complete
        return size

    def instances(self, video: Video, index: int) -> np.ndarray | None:
        if not video.instances:
            return None
        return decode_kitti_instances(read_label_map(video.instances[index]))
