"""Frames for the flow stage, decoded and resized in DataLoader worker processes.

Each video is read by one worker, start to end (each frame decoded once; video files cannot
seek reliably), and reaches the main process as chunks of consecutive frames, so decoding
overlaps inference and no pair needs a frame twice. A video that cannot be read arrives as
an error item naming the file instead of killing the loader: the stage decides whether that
fails the run or is skipped (``--skip-bad``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from stages.datasets import Dataset, Video
from stages.errors import UserError
from stages.hardware import die_with_parent, usable_cores, worker_count


@dataclass
class FrameChunk:
    """Consecutive frames of one video, or the reason the video could not be read."""

    job: int  # index of the video in the loader's list
    start: int  # index in the video of the first frame in ``frames``
    frames: torch.Tensor  # (k, H, W, 3) uint8 RGB at the stored resolution
    source_size: tuple[int, int]  # (H, W) of the decoded frames, before resizing
    last: bool  # no frame of this video follows
    error: str | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def pin_memory(self) -> FrameChunk:
        """Called by the DataLoader's pinning thread when the frames go to a GPU."""
        return replace(self, frames=self.frames.pin_memory())


def video_location(video: Video) -> str:
    return str(video.video_file or video.extra.get("dir") or video.name)


def resize_frame(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Area averaging when shrinking (no aliasing), bilinear when enlarging."""
    if size is None or frame.shape[:2] == size:
        return frame
    h, w = size
    shrink = h <= frame.shape[0] and w <= frame.shape[1]
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class VideoFrames(IterableDataset):
    """Chunks of up to ``chunk`` frames for each video; videos are dealt round-robin to workers."""

    def __init__(
        self,
        dataset: Dataset,
        videos: Sequence[Video],
        size: tuple[int, int] | None,
        chunk: int,
    ):
        self.dataset = dataset
        self.videos = list(videos)
        self.size = size
        self.chunk = max(1, chunk)

    def __iter__(self) -> Iterator[FrameChunk]:
        info = get_worker_info()
        first, step = (0, 1) if info is None else (info.id, info.num_workers)
        for job in range(first, len(self.videos), step):
            yield from self._chunks(job)

    def _chunks(self, job: int) -> Iterator[FrameChunk]:
        video = self.videos[job]
        source: tuple[int, int] | None = None
        frames: list[np.ndarray] = []
        held: FrameChunk | None = None  # sent once the next one exists: ``last`` must be sure
        count = 0
        try:
            for index, frame in enumerate(self.dataset.iter_frames(video)):
                if source is None:
                    source = frame.shape[:2]
                elif frame.shape[:2] != source:
                    where = (
                        video.rgb[index] if video.rgb else f"{video_location(video)} frame {index}"
                    )
                    raise UserError(
                        f"{where}: frame size {frame.shape[0]}x{frame.shape[1]} differs from the "
                        f"video's first frame {source[0]}x{source[1]}"
                    )
                frames.append(resize_frame(frame, self.size))
                count += 1
                if len(frames) == self.chunk:
                    if held is not None:
                        yield held
                    held = self._chunk(job, count - len(frames), frames, source)
                    frames = []
            if count == 0:
                raise UserError(f"{video_location(video)}: empty video (no frames)")
            if count != len(video):
                raise UserError(
                    f"{video_location(video)}: decoded {count} frames, the dataset listed {len(video)}"
                )
        except UserError as exc:
            yield FrameChunk(job, 0, torch.empty(0, dtype=torch.uint8), (0, 0), True, str(exc))
            return
        if frames:
            if held is not None:
                yield held
            held = self._chunk(job, count - len(frames), frames, source)
        held.last = True
        yield held

    @staticmethod
    def _chunk(job: int, start: int, frames: list[np.ndarray], source) -> FrameChunk:
        return FrameChunk(job, start, torch.from_numpy(np.stack(frames)), source, last=False)


def _no_collate(item: FrameChunk) -> FrameChunk:
    return item


def frame_loader(
    frames: VideoFrames, workers: int | None, pin_memory: bool
) -> DataLoader[FrameChunk]:
    # leave one core to the model; never more workers than videos
    workers = worker_count(workers, min(usable_cores() - 1, 8), len(frames.videos))
    return DataLoader(
        frames,
        batch_size=None,
        collate_fn=_no_collate,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
        # forked workers inherit the parent's threads' locks (zarr's event loop, OpenMP) and
        # can deadlock; spawned ones start clean, and as children of this process they can
        # die with it (a forkserver's children keep the forkserver, and it them, alive)
        multiprocessing_context="spawn" if workers else None,
        worker_init_fn=partial(_worker_init, parent=os.getpid()),
    )


def _worker_init(_worker_id: int, parent: int) -> None:
    die_with_parent(parent)  # a killed `diod flow` leaves no decoder behind
