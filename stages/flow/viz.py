"""Flow as pictures: colour-wheel images beside their frames, as PNGs or one MP4 per video.

Colour code (the Middlebury convention, built on OpenCV's HSV): hue = direction, saturation =
magnitude relative to the video's 99th-percentile magnitude, so still pixels are white and one
scale holds for every frame of a video (colours compare across time).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from stages.artifacts import Artifact
from stages.datasets import Dataset
from stages.datasets.imageio import write_png
from stages.errors import UserError
from stages.flow.loader import resize_frame
from stages.zarrstore import FLOW_STORE, open_video, video_names


def robust_max_magnitude(flow: np.ndarray, percentile: float = 99.0) -> float:
    """The magnitude that saturates the colours: a percentile, so outliers do not wash out."""
    magnitude = np.hypot(flow[..., 0, :, :], flow[..., 1, :, :], dtype=np.float32)
    return max(float(np.percentile(magnitude, percentile)), 1e-3) if magnitude.size else 1.0


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """(..., 2, H, W) flow -> (..., H, W, 3) uint8 RGB colour-wheel images."""
    flow = np.asarray(flow, np.float32)
    if max_magnitude is None:
        max_magnitude = robust_max_magnitude(flow)
    dx, dy = flow[..., 0, :, :], flow[..., 1, :, :]
    hsv = np.empty((*dx.shape, 3), np.uint8)
    angle = np.mod(np.arctan2(dy, dx), 2 * np.pi)  # [0, 2 pi), image axes (y down)
    hsv[..., 0] = (angle * (90.0 / np.pi)).astype(np.uint8) % 180  # OpenCV's hue is 0..179
    hsv[..., 1] = (np.clip(np.hypot(dx, dy) / max_magnitude, 0.0, 1.0) * 255).astype(np.uint8)
    hsv[..., 2] = 255
    width = hsv.shape[-2]
    rgb = cv2.cvtColor(hsv.reshape(-1, width, 3), cv2.COLOR_HSV2RGB)  # one call for all frames
    return rgb.reshape(hsv.shape)


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    scale = max(panel.shape[0] / 400.0, 0.3)
    cv2.putText(
        panel,
        text,
        (4, int(14 * scale) + 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale * 0.5,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    return panel


def render_video(
    artifact: Artifact,
    dataset: Dataset,
    split: str,
    name: str,
    out_dir: Path,
    *,
    mp4: bool = False,
    direction: str = "forward",
    fps: float = 5.0,
) -> Path:
    """Frame t | flow t -> t+1 (frame t+1 | flow t+1 -> t for ``backward``), side by side."""
    group = open_video(artifact, FLOW_STORE, split, name)
    if direction not in group:
        raise UserError(
            f"flow artifact {artifact.id}: video {split}/{name} has no {direction} flow "
            "(computed with --no-backward?)"
        )
    flow = np.asarray(group[direction][:], np.float32)
    size = (int(group.attrs["height"]), int(group.attrs["width"]))
    frame_names = list(group.attrs["frame_names"])
    max_magnitude = robust_max_magnitude(flow)
    colours = flow_to_rgb(flow, max_magnitude)
    shown = 0 if direction == "forward" else 1  # the frame each flow field starts from
    frames = dataset.iter_frames(dataset.video(split, name))
    panels = []
    for t, frame in enumerate(frames):
        if shown <= t < shown + len(colours):
            panel = np.concatenate([resize_frame(frame, size), colours[t - shown].copy()], axis=1)
            panels.append(
                _label(
                    panel,
                    f"{frame_names[t]}  |  {direction}, white = 0, full = {max_magnitude:.1f} px",
                )
            )
    target = out_dir / split / name
    if mp4:
        target.parent.mkdir(parents=True, exist_ok=True)
        path = target.with_suffix(".mp4")
        h, w = panels[0].shape[:2] if panels else size
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise UserError(f"{path}: OpenCV cannot write MP4 here (try PNGs, without --mp4)")
        for panel in panels:
            writer.write(cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
        writer.release()
        return path
    target.mkdir(parents=True, exist_ok=True)
    for t, panel in enumerate(panels):
        write_png(target / f"{frame_names[t + shown]}.png", panel)
    return target


def render_flow(
    artifact: Artifact,
    dataset: Dataset,
    out_dir: Path,
    *,
    splits: Iterable[str] = (),
    videos: Iterable[str] = (),
    mp4: bool = False,
    direction: str = "forward",
) -> list[Path]:
    """Render the chosen videos (default: all) of the chosen splits (default: all)."""
    wanted = set(videos)
    chosen = [
        (s, v)
        for s in (list(splits) or artifact.params["splits"])
        for v in video_names(artifact, FLOW_STORE, s)
    ]
    if wanted:
        unknown = wanted - {v for _, v in chosen}
        if unknown:
            raise UserError(f"--video {sorted(unknown)[0]}: not in flow artifact {artifact.id}")
        chosen = [(s, v) for s, v in chosen if v in wanted]
    if not chosen:
        raise UserError(f"flow artifact {artifact.id}: no videos in split(s) {', '.join(splits)}")
    return [
        render_video(artifact, dataset, s, v, out_dir, mp4=mp4, direction=direction)
        for s, v in chosen
    ]
