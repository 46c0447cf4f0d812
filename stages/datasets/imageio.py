"""Reading and writing frames and label maps, with errors that name the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from stages.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


def list_images(directory: Path) -> list[Path]:
    """Image files of a directory sorted by name (frame order)."""
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()  # decodes fully: a truncated file raises here, not later
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: unreadable or truncated image ({exc})") from None
    return img


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header only."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: unreadable image ({exc})") from None
    return h, w


def read_rgb(path: Path) -> np.ndarray:
    """An (H, W, 3) uint8 RGB frame, whatever the file's mode."""
    img = _open(path)
    if img.mode != "RGB":
        if img.mode in ("I;16", "I;16B", "I", "F"):
            raise UserError(f"{path}: expected an 8-bit colour frame, found {img.mode} data")
        img = img.convert("RGB")
    return np.asarray(img)


def read_gray(path: Path) -> np.ndarray:
    """An (H, W) uint8 gray frame, the same as ``read_rgb`` and OpenCV's RGB -> gray: OpenCV
    decodes the file 25 % faster than PIL at KITTI size (the motion masks' texture test
    reads every frame); its colour decode, not its direct gray one (libpng's conversion
    differs by a level here and there, which flips pixels at the texture threshold). EXIF
    orientation is ignored, as ``read_rgb`` ignores it. A file OpenCV cannot read goes
    through ``read_rgb``, which names the problem."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        return cv2.cvtColor(read_rgb(path), cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def read_label_map(path: Path) -> np.ndarray:
    """An integer label map (H, W) as int64, from a 1-channel 8/16-bit PNG.

    Colour-coded maps (3 channels) are folded into one id per colour, r*65536 + g*256 + b,
    so black stays 0 = background.
    """
    img = _open(path)
    arr = np.asarray(img)
    if img.mode == "P":
        arr = np.asarray(img)  # palette indices are the ids
    elif img.mode in ("RGB", "RGBA"):
        rgb = arr[..., :3].astype(np.int64)
        return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    elif img.mode == "F" or arr.dtype.kind == "f":
        raise UserError(f"{path}: expected an integer label PNG, found floating-point data")
    if arr.ndim != 2:
        raise UserError(f"{path}: expected a single-channel label PNG, found shape {arr.shape}")
    return arr.astype(np.int64)


def write_png(path: Path, array: np.ndarray) -> None:
    """Write uint8 RGB/gray or uint16 gray losslessly (OpenCV keeps 16 bits)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), array):
        raise UserError(f"{path}: could not write PNG")


class VideoFile:
    """Frames of a video file decoded with OpenCV, sequentially (seeking is unreliable)."""

    def __init__(self, path: Path):
        self.path = path

    def frame_count(self) -> int:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise UserError(f"{self.path}: cannot open video file")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        if n <= 0:  # some containers do not store it: count by decoding
            n = sum(1 for _ in self.frames())
        return n

    def frames(self) -> Iterator[np.ndarray]:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise UserError(f"{self.path}: cannot open video file")
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()
