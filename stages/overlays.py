"""Colour overlays of label maps on frames (slots of a model, objects of a video)."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np


def palette(count: int, background: int) -> np.ndarray:
    """(count, 3) uint8 RGB, well-separated hues (golden-ratio steps) for label ids
    0..count-1; the background label black."""
    colours = [colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 1.0) for i in range(count)]
    out = (np.array(colours) * 255).astype(np.uint8)
    out[background] = 0
    return out


def overlay(
    frame: np.ndarray, slots: np.ndarray, colours: np.ndarray, background: int
) -> np.ndarray:
    """Blend slot colours over the foreground segments and outline every segment."""
    labels = cv2.resize(slots, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)
    out = frame.copy()
    fg = labels != background
    out[fg] = (0.45 * frame[fg] + 0.55 * colours[labels[fg]]).astype(np.uint8)
    edges = cv2.morphologyEx(labels, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = 255
    return out
