"""Training clips: T consecutive frames and their motion masks, augmented alike.

A clip is addressed by ``(index, epoch)``: the augmentation of a clip is drawn from a
generator seeded by (seed, epoch, index), so a batch is the same whatever worker loads it
and whether or not the run was resumed. Frames come through the dataset adapter, masks
from the masks artifact's Zarr store (one chunk-aligned read of T frames); the store is
opened lazily in each worker process, never pickled.

Augmentation (paper 3.3, docs/distillation.md, weak view, also used in burn-in): random resized crop of
area scale [0.75, 1] with probability 0.4, horizontal flip with probability 0.4, the same
for every frame of the clip and for frames and masks. The crop keeps the frame's aspect
ratio (the input size fixes it anyway, and wide driving frames would be stretched by the
usual [3/4, 4/3] ratio range).

With LiDAR (``lidar``, DIOD-3D), each item also holds the clip's range maps on the input
grid under the same crop and flip (``stages.lidar.augment``), normalised (x, y, z, r) in
(0, 1), 0 where empty: ``lidar``, the network's input (points dropped, gaps filled as the
model's ``lidar_fill`` says), ``lidar_weak``, the same without the drop (a distillation
teacher's view), and ``lidar_target``, the sparse projection (the completion target).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DistributedSampler

from stages.artifacts import Artifact
from stages.datasets import Dataset, Video, open_dataset
from stages.errors import UserError
from stages.frames import FULL, Box, crop_resize_labels, crop_resize_rgb, region, within
from stages.hardware import die_with_parent
from stages.lidar.augment import LidarAugment, drop_points, mirror
from stages.lidar.projection import fill_gaps, normalise
from stages.zarrstore import MASKS_STORE, open_video, video_names


@dataclass(frozen=True)
class Augment:
    crop_p: float = 0.4
    crop_scale: tuple[float, float] = (0.75, 1.0)
    flip_p: float = 0.4


def draw_geometry(rng: np.random.Generator, augment: Augment | None) -> tuple[Box, bool]:
    """One crop box and flip decision for a whole clip."""
    if augment is None:
        return FULL, False
    box = FULL
    if rng.random() < augment.crop_p:
        side = math.sqrt(rng.uniform(*augment.crop_scale))
        box = (rng.uniform(0, 1 - side), rng.uniform(0, 1 - side), side, side)
    return box, bool(rng.random() < augment.flip_p)


def one_hot(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, h, w) ids 1..M, 0 = background -> masks (T, M, h, w) bool, valid (T, M) bool.

    A mask is valid in a frame where it has pixels (a crop can remove an object)."""
    m = int(labels.max()) if labels.size else 0
    masks = labels[:, None] == np.arange(1, m + 1, dtype=labels.dtype)[None, :, None, None]
    return masks, masks.any(axis=(2, 3))


EPOCHS = ("windows", "videos")


@dataclass(frozen=True)
class Clip:
    video: int
    start: int


class ClipDataset(torch.utils.data.Dataset):
    """T-frame clips of the split's videos present in the masks store. ``epoch`` says what
    an item is: a window (``windows``: every window of every video is one item), or a video
    (``videos``: each item is a window drawn at random, per epoch, from one video)."""

    def __init__(
        self,
        dataset: str,
        root: Path | str,
        masks: Artifact,
        split: str,
        clip_length: int,
        input_size: tuple[int, int],
        map_size: tuple[int, int],
        augment: Augment | None,
        seed: int,
        crop_top: float = 0.0,
        epoch: str = "windows",
        lidar: LidarAugment | None = None,
    ):
        self.dataset_name, self.root = dataset, Path(root)
        self.epoch = epoch
        self.crop_top = crop_top
        self.masks_artifact, self.split = masks, split
        self.clip_length, self.input_size, self.map_size = clip_length, input_size, map_size
        self.augment, self.seed = augment, seed
        self.lidar = lidar
        ds = open_dataset(dataset, root)
        names = set(video_names(masks, MASKS_STORE, split))
        if not names:
            raise UserError(f"masks artifact {masks.id} has no videos in split '{split}'")
        self.videos: list[Video] = [v for v in ds.videos(split) if v.name in names]
        missing = sorted(names - {v.name for v in self.videos})
        if missing:
            raise UserError(
                f"masks artifact {masks.id}: video(s) {', '.join(missing[:3])} of split '{split}' "
                f"are not in the {dataset} dataset at {root} (wrong --root?)"
            )
        self.clips = [
            Clip(i, s) for i, v in enumerate(self.videos) for s in range(len(v) - clip_length + 1)
        ]
        if not self.clips:
            raise UserError(
                f"split '{split}': no video has {clip_length} frames (clip length T); lower T"
            )
        self.long_enough = sorted({clip.video for clip in self.clips})
        self._dataset: Dataset | None = None
        self._mask_arrays: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.clips) if self.epoch == "windows" else len(self.long_enough)

    def clip(self, index: int, rng: np.random.Generator) -> Clip:
        """Item ``index``: a fixed window, or a window drawn by ``rng`` from one video."""
        if self.epoch == "windows":
            return self.clips[index]
        video = self.long_enough[index]
        starts = len(self.videos[video]) - self.clip_length + 1
        return Clip(video, int(rng.integers(starts)))

    def __getstate__(self) -> dict[str, Any]:  # workers reopen their own handles
        return {**self.__dict__, "_dataset": None, "_mask_arrays": {}}

    def _masks(self, video: int) -> Any:
        if video not in self._mask_arrays:
            group = open_video(
                self.masks_artifact, MASKS_STORE, self.split, self.videos[video].name
            )
            self._mask_arrays[video] = group["masks"]
        return self._mask_arrays[video]

    def _source(self) -> Dataset:
        if self._dataset is None:
            self._dataset = open_dataset(self.dataset_name, self.root)
        return self._dataset

    def _frames(self, video: Video, start: int) -> list[np.ndarray]:
        return [self._source().frame(video, i) for i in range(start, start + self.clip_length)]

    def _range_maps(
        self, video: Video, start: int, box: Box, mirrored: bool, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """The clip's LiDAR input, teacher view and completion target, (T, 4, H, W) float32
        each."""
        maps = []
        for i in range(start, start + self.clip_length):
            metric = self._source().lidar(video, i, self.input_size, box)
            if metric is None:
                raise UserError(
                    f"{video.extra.get('dir', video.name)}: no LiDAR for frame {i}; "
                    f"training on LiDAR needs a dataset with a sweep per frame"
                )
            maps.append(metric)
        metric = np.stack(maps)
        target = normalise(mirror(metric) if mirrored else metric)
        seen = fill_gaps(drop_points(target, rng, self.lidar.point_drop), self.lidar.fill)
        maps = {
            "lidar": seen,
            "lidar_weak": fill_gaps(target, self.lidar.fill),
            "lidar_target": target,
        }
        return {
            key: torch.from_numpy(np.ascontiguousarray(value.transpose(0, 3, 1, 2)))
            for key, value in maps.items()
        }

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        """frames (T, 3, H, W) uint8 (made float on the training device, see ``to_device``),
        masks (T, M, h, w) bool, valid (T, M) bool."""
        index, epoch = key
        rng = np.random.default_rng((self.seed, epoch, index))
        clip = self.clip(index, rng)
        video = self.videos[clip.video]
        box, flip = draw_geometry(rng, self.augment)
        box = within(region(self.crop_top), box)
        rgb = np.stack(
            [crop_resize_rgb(f, box, self.input_size) for f in self._frames(video, clip.start)]
        )
        labels = np.asarray(self._masks(clip.video)[clip.start : clip.start + self.clip_length])
        labels = crop_resize_labels(labels, box, self.map_size)
        if flip:
            rgb, labels = rgb[:, :, ::-1], labels[:, :, ::-1]
        masks, valid = one_hot(labels)
        item = {
            "frames": torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))),
            "masks": torch.from_numpy(np.ascontiguousarray(masks)),
            "valid": torch.from_numpy(valid),
        }
        if self.lidar is not None:
            item |= self._range_maps(video, clip.start, box, flip, rng)
        return item


def worker_init(_worker_id: int, parent: int) -> None:
    """Data workers die with their parent (pid ``parent``), and share the cores with the
    training process: OpenCV stays single-threaded (torch already is in workers)."""
    die_with_parent(parent)
    cv2.setNumThreads(1)


def collate(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack clips; pad the mask axis to the batch's largest M (padding is not valid)."""
    m = max(it["masks"].shape[1] for it in items)
    t, _, h, w = items[0]["masks"].shape
    masks = torch.zeros(len(items), t, m, h, w, dtype=torch.bool)
    valid = torch.zeros(len(items), t, m, dtype=torch.bool)
    for i, it in enumerate(items):
        k = it["masks"].shape[1]
        masks[i, :, :k] = it["masks"]
        valid[i, :, :k] = it["valid"]
    batch = {"masks": masks, "valid": valid}
    for key in ("frames", "lidar", "lidar_weak", "lidar_target"):
        if key in items[0]:
            batch[key] = torch.stack([it[key] for it in items])
    return batch


class ClipBatches:
    """Batches of ``(clip index, epoch)`` for steps [start_step, total_steps) of one rank.

    Each epoch is a DistributedSampler permutation (seeded, ``set_epoch``; one replica when
    not distributed) cut into batches of ``batch_size`` clips; step s is batch
    s % steps_per_epoch of epoch s // steps_per_epoch, so a resumed run sees exactly the
    batches the uninterrupted run would have.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        *,
        rank: int = 0,
        world: int = 1,
        start_step: int = 0,
        total_steps: int,
    ):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world = rank, world
        self.start_step, self.total_steps = start_step, total_steps
        self.steps_per_epoch = (n // world) // batch_size
        if self.steps_per_epoch == 0:
            raise UserError(
                f"--batch-size {batch_size}: only {n} training clips for {world} process(es); "
                "lower the batch size or the clip length"
            )

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def _epoch(self, epoch: int) -> list[int]:
        sampler = DistributedSampler(
            range(self.n),
            num_replicas=self.world,
            rank=self.rank,
            shuffle=True,
            seed=self.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        return list(sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while step < self.total_steps:
            epoch, first = divmod(step, self.steps_per_epoch)
            order = self._epoch(epoch)
            for b in range(first, self.steps_per_epoch):
                if step >= self.total_steps:
                    return
                yield [(i, epoch) for i in order[b * self.batch_size : (b + 1) * self.batch_size]]
                step += 1
