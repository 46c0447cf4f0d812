"""What part of a frame the model sees, and at what size: crop boxes as fractions of the
frame, shared by training clips (augmentation crops) and prediction (the dataset's fixed
crop, e.g. TRI-PD's top rows)."""

from __future__ import annotations

import math

import cv2
import numpy as np

Box = tuple[float, float, float, float]  # y0, x0, height, width as fractions of the frame
FULL: Box = (0.0, 0.0, 1.0, 1.0)


def region(crop_top: float) -> Box:
    """The part of a frame the model sees: all of it below the top ``crop_top`` fraction
    (TRI-PD: the top 128 of its 608 rows at half resolution, as the reference)."""
    return (crop_top, 0.0, 1.0 - crop_top, 1.0)


def within(outer: Box, inner: Box) -> Box:
    """``inner`` (fractions of ``outer``) as fractions of the whole frame."""
    return (
        outer[0] + inner[0] * outer[2],
        outer[1] + inner[1] * outer[3],
        inner[2] * outer[2],
        inner[3] * outer[3],
    )


def box_pixels(box: Box, height: int, width: int) -> tuple[int, int, int, int]:
    """The rows y0.. y0 + h - 1 and columns x0.. x0 + w - 1 that ``box`` cuts from a frame:
    (y0, x0, h, w)."""
    y0, x0 = round(box[0] * height), round(box[1] * width)
    h = max(1, min(height - y0, round(box[2] * height)))
    w = max(1, min(width - x0, round(box[3] * width)))
    return y0, x0, h, w


def crop_resize_rgb(frame: np.ndarray, box: Box, size: tuple[int, int]) -> np.ndarray:
    """Crop a (H, W, 3) uint8 frame to ``box`` and resize to ``size`` (area when shrinking)."""
    y0, x0, h, w = box_pixels(box, *frame.shape[:2])
    crop = frame[y0 : y0 + h, x0 : x0 + w]
    if crop.shape[:2] == size:
        return crop
    shrink = size[0] < h and size[1] < w
    return cv2.resize(
        crop, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


def crop_resize_labels(labels: np.ndarray, box: Box, size: tuple[int, int]) -> np.ndarray:
    """Crop (..., H, W) label maps to ``box`` and resize with pixel-centre nearest neighbour."""
    y0, x0, h, w = box_pixels(box, *labels.shape[-2:])
    rows = y0 + (2 * np.arange(size[0]) + 1) * h // (2 * size[0])
    cols = x0 + (2 * np.arange(size[1]) + 1) * w // (2 * size[1])
    return labels[..., rows[:, None], cols[None, :]]


def size_at_area(
    frame: tuple[int, int], reference: tuple[int, int], crop_top: float = 0.0, multiple: int = 4
) -> tuple[int, int]:
    """A model input for frames of size ``frame``: the aspect ratio of the part of the frame
    the model sees (below ``crop_top``), at about the ``reference`` input's area (objects
    keep about the pixel size the model knows), sides multiples of ``multiple`` (the
    encoder's stride)."""
    seen_h = frame[0] * (1.0 - crop_top)
    scale = math.sqrt(reference[0] * reference[1] / (seen_h * frame[1]))
    return (
        max(multiple, round(seen_h * scale / multiple) * multiple),
        max(multiple, round(frame[1] * scale / multiple) * multiple),
    )
