"""Pictures of a masks artifact: overlays on the frames (PNG per frame or MP4 per video),
or the raw id maps as PNGs in the layout ``diod masks --import`` reads back."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from stages import zarrstore
from stages.artifacts import Artifact
from stages.datasets import Dataset
from stages.datasets.imageio import write_png
from stages.errors import UserError
from stages.masks.importer import export_pngs
from stages.progress import track

ALPHA = 0.5
MP4_FPS = 10


def palette(count: int) -> np.ndarray:
    """(count + 1, 3) uint8 RGB, 0 black; hues spaced by the golden ratio so neighbouring
    ids differ strongly, the same colours in every frame and run."""
    colours = np.zeros((count + 1, 3), np.uint8)
    for i in range(1, count + 1):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 1.0)
        colours[i] = (round(r * 255), round(g * 255), round(b * 255))
    return colours


def overlay(frame: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """A frame (resized to the masks' size) with each mask tinted and outlined."""
    h, w = masks.shape
    if frame.shape[:2] != (h, w):
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    colours = palette(int(masks.max()))
    tinted = frame.astype(np.float32)
    inside = masks > 0
    tinted[inside] = (1 - ALPHA) * tinted[inside] + ALPHA * colours[masks[inside]]
    edges = inside & (cv2.morphologyEx(masks, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0)
    tinted[edges] = colours[masks[edges]]
    return tinted.astype(np.uint8)


def _selected(art: Artifact, splits: Sequence[str], videos: Sequence[str]) -> list[tuple[str, str]]:
    available = art.params["splits"]
    unknown = sorted(set(splits) - set(available))
    if unknown:
        raise UserError(
            f"--split {', '.join(unknown)}: not in masks artifact {art.id} (it has {', '.join(available)})"
        )
    pairs = [
        (s, v)
        for s in (splits or available)
        for v in zarrstore.video_names(art, zarrstore.MASKS_STORE, s)
    ]
    if videos:
        missing = sorted(set(videos) - {v for _, v in pairs})
        if missing:
            raise UserError(f"--video {', '.join(missing)}: not in masks artifact {art.id}")
        pairs = [(s, v) for s, v in pairs if v in videos]
    return pairs


def render_masks(
    art: Artifact,
    dataset: Dataset,
    out_dir: Path,
    *,
    splits: Sequence[str] = (),
    videos: Sequence[str] = (),
    mode: str = "png",
) -> list[Path]:
    """Write overlays (``png``: out/<split>/<video>/<frame>.png, ``mp4``:
    out/<split>/<video>.mp4) or id maps (``ids``: out/<split>/<video>/<frame>.png)."""
    written = []
    for split, name in track(_selected(art, splits, videos), "rendering masks"):
        group = zarrstore.open_video(art, zarrstore.MASKS_STORE, split, name)
        masks = np.asarray(group["masks"][:])
        frame_names = list(group.attrs["frame_names"])
        target = out_dir / split / name
        if mode == "ids":
            export_pngs(masks, frame_names, target)
            written.append(target)
            continue
        video = dataset.video(split, name)
        frames = (
            overlay(frame, m) for frame, m in zip(dataset.iter_frames(video), masks, strict=False)
        )
        if mode == "mp4":
            target.parent.mkdir(parents=True, exist_ok=True)
            path = target.with_suffix(".mp4")
            h, w = masks.shape[1:]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), MP4_FPS, (w, h))
            if not writer.isOpened():
                raise UserError(f"{path}: OpenCV cannot write MP4 here")
            for image in frames:
                writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            writer.release()
            written.append(path)
        else:
            target.mkdir(parents=True, exist_ok=True)
            for frame_name, image in zip(frame_names, frames, strict=False):
                write_png(target / f"{frame_name}.png", image)
            written.append(target)
    return written
