"""Any video in: video files, folders of frames and globs of either, as named frame
sequences, checked before any work starts (so a bad input fails at once, naming itself,
and nothing is half-written for it)."""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stages.datasets.imageio import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    VideoFile,
    image_size,
    list_images,
    read_rgb,
)
from stages.errors import UserError


@dataclass(frozen=True)
class Footage:
    """One input: a video file or a folder of frames."""

    path: Path
    frame_names: tuple[str, ...]
    size: tuple[int, int]  # (H, W) of every frame
    fps: float | None  # the file's frame rate; None for a folder of frames
    images: tuple[Path, ...] = ()  # a folder's frame files, in order; () for a video file

    @property
    def name(self) -> str:
        return self.path.stem if self.path.is_file() else self.path.name

    def __len__(self) -> int:
        return len(self.frame_names)

    def frames(self) -> Iterator[np.ndarray]:
        """(H, W, 3) uint8 RGB frames in order; a frame of another size is a UserError."""
        if self.images:
            source = (read_rgb(p) for p in self.images)
        else:
            source = VideoFile(self.path).frames()
        count = 0
        for name, frame in zip(self.frame_names, source, strict=False):
            if frame.shape[:2] != self.size:
                raise UserError(
                    f"{self.path}: frame {name} is {frame.shape[0]}x{frame.shape[1]}, the "
                    f"first is {self.size[0]}x{self.size[1]} (one size per input)"
                )
            count += 1
            yield frame
        if count != len(self.frame_names):
            raise UserError(
                f"{self.path}: {count} frames could be decoded, {len(self.frame_names)} expected"
            )


def _video(path: Path) -> Footage:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"{path}: cannot open video file (unreadable or not a video)")
    fps = capture.get(cv2.CAP_PROP_FPS)
    ok, first = capture.read()
    capture.release()
    if not ok:
        raise UserError(f"{path}: no frame could be decoded (unreadable or empty video)")
    n = VideoFile(path).frame_count()
    return Footage(
        path=path,
        frame_names=tuple(f"{i:06d}" for i in range(n)),
        size=first.shape[:2],
        fps=float(fps) if fps and fps > 0 else None,
    )


def _folder(path: Path) -> Footage:
    images = list_images(path)
    if not images:
        raise UserError(
            f"{path}: no frames in this folder (expected {', '.join(IMAGE_SUFFIXES)} files)"
        )
    return Footage(
        path=path,
        frame_names=tuple(p.stem for p in images),
        size=image_size(images[0]),
        fps=None,
        images=tuple(images),
    )


def _one(path: Path) -> Footage:
    if path.is_dir():
        return _folder(path)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return _video(path)
    if path.is_file():
        raise UserError(f"{path}: not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames")
    raise UserError(f"{path}: no such file or folder")


def open_inputs(specs: Sequence[str]) -> list[Footage]:
    """Every input named by ``specs`` (paths or globs), checked; two inputs of one name
    (they would write one output folder) are a UserError."""
    paths: list[Path] = []
    for spec in specs:
        if glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(spec))
            if not matches:
                raise UserError(f"{spec}: the pattern matches nothing")
            paths.extend(matches)
        else:
            paths.append(Path(spec))
    if not paths:
        raise UserError("INPUT: give at least one video file, folder of frames or glob")
    inputs = [_one(p) for p in paths]
    seen: dict[str, Path] = {}
    for footage in inputs:
        other = seen.setdefault(footage.name, footage.path)
        if other != footage.path:
            raise UserError(
                f"{footage.path} and {other}: two inputs named '{footage.name}' would write "
                "one output folder; rename one"
            )
    return inputs
