"""One interface over every dataset layout: videos of a split, frames, optional labels.

Every stage reads data only through this interface, so adding a dataset means adding an
adapter, never touching a stage. Frames are (H, W, 3) uint8 RGB; label maps (GT instances,
precomputed motion masks) are (H, W) int64 with 0 = background.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stages.datasets.imageio import image_size, read_label_map, read_rgb
from stages.errors import UserError
from stages.frames import FULL, Box

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(*parts: str) -> str:
    """A filesystem- and Zarr-safe video name built from path parts."""
    return "__".join(SAFE_NAME.sub("-", p) for p in parts if p)


@dataclass(frozen=True)
class Video:
    """One video of a split. ``frames`` are the frame names (file stems) in order.

    ``rgb`` holds the frame paths (empty for a video file), ``instances`` and ``motion`` the
    per-frame label paths when the dataset has them (else empty).
    """

    name: str
    split: str
    frames: tuple[str, ...]
    rgb: tuple[Path, ...] = ()
    instances: tuple[Path, ...] = ()
    motion: tuple[Path, ...] = ()
    video_file: Path | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


class Dataset(ABC):
    """A dataset root laid out in one known way."""

    name: str = ""
    #: splits the adapter knows, in the order `diod data check` reports them
    split_names: Sequence[str] = ("train", "val")

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise UserError(f"--root {self.root}: not a directory")
        self._videos: dict[str, list[Video]] = {}

    # -- listing -------------------------------------------------------------------------
    def splits(self) -> list[str]:
        return [s for s in self.split_names if self._list_videos(s)]

    def videos(self, split: str) -> list[Video]:
        if split not in self._videos:
            found = self._list_videos(split)
            if not found:
                raise UserError(
                    f"{self.name} dataset at {self.root}: no videos in split '{split}' "
                    f"(splits found: {', '.join(self.splits()) or 'none'})"
                )
            self._videos[split] = found
        return self._videos[split]

    def video(self, split: str, name: str) -> Video:
        for v in self.videos(split):
            if v.name == name:
                return v
        raise UserError(f"{self.name} dataset at {self.root}: no video '{name}' in split '{split}'")

    @abstractmethod
    def _list_videos(self, split: str) -> list[Video]:
        """Videos of a split, [] if the split is absent; cheap (no decoding)."""

    # -- reading -------------------------------------------------------------------------
    def frame(self, video: Video, index: int) -> np.ndarray:
        if video.video_file is not None:
            for i, img in enumerate(self.iter_frames(video)):
                if i == index:
                    return img
            raise UserError(f"{video.video_file}: frame {index} not found")
        return read_rgb(video.rgb[index])

    def iter_frames(self, video: Video) -> Iterator[np.ndarray]:
        """All frames in order, each decoded once (the efficient path for video files)."""
        for path in video.rgb:
            yield read_rgb(path)

    def frame_size(self, video: Video) -> tuple[int, int]:
        """(H, W) of the first frame."""
        if video.video_file is not None:
            return next(iter(self.iter_frames(video))).shape[:2]
        return image_size(video.rgb[0])

    def instances(self, video: Video, index: int) -> np.ndarray | None:
        """GT instance ids (H, W) int64, 0 = background; None if the dataset has none."""
        return read_label_map(video.instances[index]) if video.instances else None

    def motion(self, video: Video, index: int) -> np.ndarray | None:
        """Precomputed motion masks (H, W) int64 ids, 0 = background; None if absent."""
        return read_label_map(video.motion[index]) if video.motion else None

    def lidar(
        self, video: Video, index: int, grid: tuple[int, int], box: Box = FULL
    ) -> np.ndarray | None:
        """Frame ``index``'s LiDAR sweep on a ``grid`` (h, w) over the part ``box`` of the
        frame (all of it by default; a training crop): (h, w, 4) float32 metric (x, y, z, r)
        in camera coordinates, zeros where no point falls (``stages.lidar.projection``);
        None if the video has no LiDAR."""
        return None

    def dense_lidar(
        self, video: Video, index: int, grid: tuple[int, int], box: Box = FULL
    ) -> np.ndarray | None:
        """As ``lidar`` but from a point at every pixel that sees a surface: the dense scene
        a completion loss scores against, where the dataset knows it (synth's depth); None
        otherwise."""
        return None

    def moving_ids(self, video: Video) -> set[int] | None:
        """Which GT instance ids move in the world, when the dataset says (synth does)."""
        return None

    def object_groups(self, video: Video) -> dict[str, set[int]]:
        """GT instance ids by a property the dataset records, scored apart by ``diod eval``
        (synth: ``lidar_weak``, the objects its LiDAR barely sees); none by default."""
        return {}

    def conditions(self, video: Video) -> frozenset[str]:
        """The video's capture conditions, scored apart by ``diod eval`` (synth: ``night``);
        none by default."""
        return frozenset()

    def gt_flow(self, video: Video) -> np.ndarray | None:
        """Ground-truth forward flow (T-1, 2, H, W) float32, channels (dx, dy), if known."""
        return None

    def gt_backward_flow(self, video: Video) -> np.ndarray | None:
        """Ground-truth backward flow (T-1, 2, H, W) float32, channels (dx, dy): pair t is
        the flow from frame t+1 back to frame t, as the flow stage stores it; None if unknown."""
        return None

    # -- validation ----------------------------------------------------------------------
    def check(self, split: str, *, decode: bool = True, progress=None) -> dict[str, Any]:
        """Validate a split; raise UserError naming the first bad file."""
        videos = self.videos(split)
        sizes: set[tuple[int, int]] = set()
        n_frames = 0
        iterable = progress(videos, f"checking {split}") if progress else videos
        for video in iterable:
            if len(video) == 0:
                where = video.video_file or (video.extra.get("dir") or video.name)
                raise UserError(f"{where}: empty video (no frames)")
            size = self._check_video(video, decode)
            sizes.add(size)
            n_frames += len(video)
        return {
            "split": split,
            "videos": len(videos),
            "frames": n_frames,
            "resolutions": sorted(f"{h}x{w}" for h, w in sizes),
            "gt_instances": sum(bool(v.instances) for v in videos),
            "motion_masks": sum(bool(v.motion) for v in videos),
        }

    def _check_video(self, video: Video, decode: bool) -> tuple[int, int]:
        if video.video_file is not None:
            shapes = {img.shape[:2] for img in self.iter_frames(video)}
            if len(shapes) != 1:
                raise UserError(f"{video.video_file}: frames of different sizes {sorted(shapes)}")
            return shapes.pop()
        size = None
        for path in video.rgb:
            hw = read_rgb(path).shape[:2] if decode else image_size(path)
            if size is None:
                size = hw
            elif hw != size:
                raise UserError(
                    f"{path}: frame size {hw[0]}x{hw[1]} differs from the video's first frame "
                    f"{size[0]}x{size[1]}"
                )
        for kind in ("instances", "motion"):
            for path in getattr(video, kind):
                hw = read_label_map(path).shape if decode else image_size(path)
                if hw != size:
                    raise UserError(
                        f"{path}: {kind} map size {hw[0]}x{hw[1]} differs from its frame "
                        f"{size[0]}x{size[1]}"
                    )
        return size


def require_frame_files(folder: Path, suffix: str, video: Video, what: str) -> None:
    """``folder`` must hold a ``<frame><suffix>`` file for every frame of ``video`` (its
    LiDAR sweeps, depth maps): else one error line naming the first frame without one."""
    found = {p.stem for p in folder.glob(f"*{suffix}")}
    missing = [f for f in video.frames if f not in found]
    if missing:
        raise UserError(
            f"{folder}: {len(found)} {what} for the {len(video)} frames of "
            f"{video.extra['dir']}; none for frame {missing[0]}"
        )


def labels_for_frames(label_dir: Path, frames: Sequence[Path], kind: str) -> tuple[Path, ...]:
    """Per-frame label paths in ``label_dir`` with the frames' stems, () if the dir is absent.

    A present directory that lacks a frame's label is an error naming the missing file.
    """
    if not label_dir.is_dir():
        return ()
    available = {p.stem: p for p in label_dir.iterdir() if p.suffix.lower() == ".png"}
    out = []
    for frame in frames:
        if frame.stem not in available:
            raise UserError(
                f"{label_dir / (frame.stem + '.png')}: missing {kind} map for frame {frame}"
            )
        out.append(available[frame.stem])
    return tuple(out)
