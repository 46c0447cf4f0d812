"""Precomputed motion masks: id PNGs from a folder, or the dataset's own, into the artifact.

Layout of ``--import DIR``: ``DIR/<split>/<video>/<frame>.png``, one PNG per frame named
like the frame (the dataset's frame names), an integer id per instance, 0 = background
(8/16-bit grey, palette, or colour-coded RGB folded to one id per colour). The dataset's
own masks are the adapter's ``motion`` maps (folder ``motion/``, KITTI ``motion/`` e.g.
Bao et al.'s ``raft_seg``, TRI-PD ``est_masks/``).

Remapping, per frame (the reference's TRI-PD loader does the same with a fixed 50 px):
raw ids in increasing order become 1..M; a raw id covering fewer than ``min_area`` pixels
becomes background; if more than ``max_masks`` remain, the largest ``max_masks`` are kept
(still numbered in raw-id order). Masks keep the frames' resolution.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from stages.datasets import Dataset, Video
from stages.datasets.imageio import read_label_map, write_png
from stages.errors import UserError


def remap(raw: np.ndarray, min_area: int, max_masks: int) -> np.ndarray:
    """Raw ids (H, W) -> consecutive ids 1..M (uint16), tiny regions dropped."""
    values, inverse, counts = np.unique(raw, return_inverse=True, return_counts=True)
    keep = (values != 0) & (counts >= max(min_area, 1))
    if keep.sum() > max_masks:
        largest = np.argsort(-np.where(keep, counts, -1), kind="stable")[:max_masks]
        keep = np.zeros_like(keep)
        keep[largest] = True
    ids = np.zeros(values.size, np.uint16)
    ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint16)
    return ids[inverse.reshape(raw.shape)]


def import_paths(directory: Path, video: Video) -> list[Path]:
    """The PNG of every frame of ``video`` under ``directory``; error naming the first missing."""
    video_dir = directory / video.split / video.name
    if not video_dir.is_dir():
        raise UserError(
            f"--import {directory}: no folder {video_dir} for video '{video.name}' of split "
            f"'{video.split}' (expected DIR/<split>/<video>/<frame>.png)"
        )
    paths = [video_dir / f"{frame}.png" for frame in video.frames]
    for path in paths:
        if not path.is_file():
            raise UserError(
                f"{path}: missing mask PNG for frame '{path.stem}' of video '{video.name}'"
            )
    return paths


def dataset_mask_paths(dataset: Dataset, video: Video) -> list[Path]:
    if not video.motion:
        raise UserError(
            f"--dataset-masks: the {dataset.name} dataset at {dataset.root} has no precomputed "
            f"motion masks for video '{video.split}/{video.name}'"
        )
    return list(video.motion)


def read_frame_masks(
    path: Path, frame_size: tuple[int, int], min_area: int, max_masks: int
) -> np.ndarray:
    """One frame's PNG, checked against its frame's size, remapped."""
    raw = read_label_map(path)
    if raw.shape != tuple(frame_size):
        raise UserError(
            f"{path}: mask size {raw.shape[0]}x{raw.shape[1]} differs from its frame "
            f"{frame_size[0]}x{frame_size[1]}"
        )
    return remap(raw, min_area, max_masks)


def fingerprint(paths: Iterable[Path]) -> str:
    """sha256 over (name, size, mtime) of the input files: the artifact id changes when the
    imported masks do, without reading every file."""
    digest = hashlib.sha256()
    for path in paths:
        st = os.stat(path)
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def export_pngs(masks: np.ndarray, frame_names: Iterable[str], out_dir: Path) -> list[Path]:
    """Write a video's (T, H, W) ids as one lossless PNG per frame (8- or 16-bit grey):
    the layout ``--import`` reads back."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for frame, ids in zip(frame_names, masks, strict=True):
        path = out_dir / f"{frame}.png"
        write_png(path, np.ascontiguousarray(ids))
        written.append(path)
    return written
