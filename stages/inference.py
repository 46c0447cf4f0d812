"""`diod predict`: a trained model on any video, objects out at the video's own size.

Per input (a video file or a folder of frames) it writes ``<out>/<name>/``:

    ids/<frame>.png     uint16 object ids per frame at the original size, 0 = background
    ids.zarr            the same maps as one (T, H, W) uint16 array, a chunk per frame
    objects.jsonl       a line per object and frame: frame, id, box, area, score, moving
    overlay.mp4         objects in colour over the frames (unless --no-overlay)
    contact_sheet.png   a grid of overlay frames spread over the video (unless --no-overlay)
    summary.json        model, geometry, frames, objects, speed; written last

Geometry: the network is fully convolutional (docs/model.md), so a frame is not squashed
into the training input's aspect ratio: the frame (below the model's cropped top, if any)
is resized to about the training input's area with its own aspect ratio, sides multiples of
4, or 28 with a DINOv2 encoder (``stages.frames.size_at_area``); ``size`` overrides it. The maps are upsampled bilinearly to the
frame's size before the argmax, so objects keep smooth edges at any resolution.

Object ids: linked frame to frame and across clips on the frame they share
(``stages.tracks``). ``moving`` is null: no motion estimate is made for a bare video.

An input's folder appears complete or not at all: it is written as ``.<name>.partial``
and renamed when done; a rerun skips complete inputs and redoes interrupted ones.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import zarr
from scipy import ndimage

from stages import modelfile
from stages.artifacts import ArtifactStore
from stages.datasets.imageio import write_png
from stages.errors import UserError
from stages.footage import Footage, open_inputs
from stages.frames import size_at_area
from stages.hardware import model_precision, resolve_device
from stages.overlays import overlay, palette
from stages.predict import Predictor, argmax_scores
from stages.progress import log, track
from stages.tracks import ObjectTracks, TrackParams
from stages.train import checkpoint
from stages.zarrstore import compressor

SHEET_FRAMES = 12
SHEET_COLUMNS = 4
SHEET_WIDTH = 1600  # px of the contact sheet


@dataclass(frozen=True)
class PredictConfig:
    inputs: tuple[str, ...]
    model: str  # a model file, an artifact id (prefix) of any dataset, or burnin/distill
    out: Path = Path("predictions")
    which: str = "teacher"
    size: tuple[int, int] | None = None  # model input HxW; None: frames.size_at_area
    batch_size: int = 4
    device: str = "auto"
    precision: str = "auto"
    overlay: bool = True
    fps: float | None = None  # of overlay.mp4 for folders of frames; None: 10
    tracks: TrackParams = field(default_factory=TrackParams)
    force: bool = False


def resolve_model(store: ArtifactStore, ref: str, which: str) -> modelfile.LoadedModel:
    """A model file path, else a complete burn-in/distill artifact of any dataset in the
    workspace: by id prefix, or ``burnin`` / ``distill`` for the newest complete one."""
    path = Path(ref)
    if path.suffix or path.exists():
        return modelfile.load(path)
    return modelfile.from_artifact(checkpoint.find_trained(store, ref), which)


def predict(store: ArtifactStore, config: PredictConfig) -> list[Path]:
    """Predict every input; returns the output folders (complete ones are skipped)."""
    inputs = open_inputs(config.inputs)
    loaded = resolve_model(store, config.model, config.which)
    device = resolve_device(config.device)
    precision = model_precision(config.precision, device)
    model = loaded.model.to(device).eval()
    if device.type == "cuda":
        model.use_channels_last()
    config.out.mkdir(parents=True, exist_ok=True)
    outputs = []
    for footage in inputs:
        target = config.out / footage.name
        if target.is_dir() and (target / "summary.json").exists() and not config.force:
            log.info("%s is complete: skipped (--force to redo)", target)
            outputs.append(target)
            continue
        outputs.append(_predict_one(footage, loaded, model, device, precision, config, target))
    return outputs


def _predict_one(
    footage: Footage,
    loaded: modelfile.LoadedModel,
    model: torch.nn.Module,
    device: torch.device,
    precision: str,
    config: PredictConfig,
    target: Path,
) -> Path:
    geometry = loaded.geometry
    multiple = loaded.model.config.input_multiple  # 4; 28 for a DINOv2 encoder
    if loaded.model.config.map_size is not None:  # a map token norm: its training size only
        if config.size not in (None, geometry.size):
            raise UserError(
                f"--size {config.size[0]}x{config.size[1]}: this model (token_norm map) runs at "
                f"its training input size {geometry.size[0]}x{geometry.size[1]} only"
            )
        size = geometry.size
    else:
        size = config.size or size_at_area(footage.size, geometry.size, geometry.crop_top, multiple)
    if any(side % multiple for side in size):
        raise UserError(f"--size {size[0]}x{size[1]}: both sides must be multiples of {multiple}")
    staging = config.out / f".{footage.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log.info(
        "%s: %d frames %dx%d -> model input %dx%d, T=%d",
        footage.path,
        len(footage),
        *footage.size,
        *size,
        geometry.clip_length,
    )
    tic = time.perf_counter()
    writer: _Outputs | None = None
    try:
        writer = _Outputs(staging, footage, config)
        for index, ids, scores, frame in track(
            _object_maps(footage, loaded, model, size, device, precision, config),
            f"predict {footage.name}",
            total=len(footage),
        ):
            writer.add(index, ids, scores, frame)
        seconds = time.perf_counter() - tic
        writer.close(
            {
                "input": str(footage.path),
                "frames": len(footage),
                "frame_size": list(footage.size),
                "model_input": list(size),
                "model": {"network": loaded.network, **loaded.lineage},
                "clip_length": geometry.clip_length,
                "objects": writer.objects,
                "seconds": round(seconds, 3),
                "frames_per_s": round(len(footage) / seconds, 3),
                "device": str(device),
                "precision": precision,
            }
        )
    except BaseException:
        if writer is not None:
            writer.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    log.info("%s: %d objects -> %s", footage.name, writer.objects, target)
    return target


def _object_maps(
    footage: Footage,
    loaded: modelfile.LoadedModel,
    model: torch.nn.Module,
    size: tuple[int, int],
    device: torch.device,
    precision: str,
    config: PredictConfig,
) -> Iterator[tuple[int, np.ndarray, dict[int, float], np.ndarray]]:
    """(frame index, object ids (H, W) uint16, score per object id, RGB frame) in order."""
    geometry = loaded.geometry
    slots = model.config.num_slots
    overlap = 1 if geometry.clip_length > 1 else 0
    originals: dict[int, np.ndarray] = {}

    def remember() -> Iterator[np.ndarray]:
        for i, frame in enumerate(footage.frames()):
            originals[i] = frame
            yield frame

    tracks = ObjectTracks(slots, config.tracks)
    height, width = footage.size
    predictor = Predictor(
        model, size, geometry.crop_top, geometry.clip_length, config.batch_size, device, precision
    )
    for start, first, maps in predictor.clips(
        predictor.rgb_inputs(remember()), len(footage), overlap
    ):
        slot_ids, scores = argmax_scores(maps)
        clip = slot_ids.cpu().numpy()
        tracks.start_clip(clip[first - start - 1] if first > start else None)
        score_rows = scores.cpu().numpy()
        for offset in range(first - start, maps.shape[0]):
            index = start + offset
            lut = tracks.frame(clip[offset])
            if tracks.next_id > np.iinfo(np.uint16).max:
                raise UserError(f"{footage.path}: more than 65535 objects: uint16 ids overflow")
            full = F.interpolate(
                maps[offset : offset + 1], size=(height, width), mode="bilinear"
            ).argmax(1)[0]
            ids = lut[full.cpu().numpy()].astype(np.uint16)
            frame_scores = {int(lut[k]): float(score_rows[offset, k]) for k in range(slots)}
            yield index, ids, frame_scores, originals.pop(index)  # each frame output once


class _Outputs:
    """Everything written for one input, in its staging folder."""

    def __init__(self, root: Path, footage: Footage, config: PredictConfig):
        self.root, self.footage, self.config = root, footage, config
        (root / "ids").mkdir()
        n, (h, w) = len(footage), footage.size
        self.array = zarr.create_array(
            store=str(root / "ids.zarr"),
            shape=(n, h, w),
            chunks=(1, h, w),
            dtype=np.uint16,
            fill_value=0,
            compressors=compressor(np.dtype(np.uint16)),
        )
        self.lines = (root / "objects.jsonl").open("w")
        self.seen: set[int] = set()
        self.video: cv2.VideoWriter | None = None
        self.sheet_at = set(np.linspace(0, n - 1, min(SHEET_FRAMES, n)).round().astype(int))
        self.sheet: list[np.ndarray] = []

    @property
    def objects(self) -> int:
        return len(self.seen)

    def add(self, index: int, ids: np.ndarray, scores: dict[int, float], frame: np.ndarray):
        name = self.footage.frame_names[index]
        write_png(self.root / "ids" / f"{name}.png", ids)
        self.array[index] = ids
        areas = np.bincount(ids.ravel())
        for oid, box in enumerate(ndimage.find_objects(ids), start=1):
            if box is None or areas[oid] == 0:
                continue
            self.seen.add(oid)
            record = {
                "frame": index,
                "frame_name": name,
                "id": oid,
                "box": [box[1].start, box[0].start, box[1].stop, box[0].stop],
                "area": int(areas[oid]),
                "score": round(scores.get(oid, 0.0), 4),
                "moving": None,
            }
            self.lines.write(json.dumps(record) + "\n")
        if self.config.overlay:
            self._overlay(index, ids, frame)

    def _overlay(self, index: int, ids: np.ndarray, frame: np.ndarray) -> None:
        image = overlay(frame, ids, palette(int(ids.max()) + 1, 0), background=0)
        if self.video is None:
            fps = self.footage.fps or self.config.fps or 10.0
            h, w = image.shape[:2]
            self.video = cv2.VideoWriter(
                str(self.root / "overlay.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h)
            )
            if not self.video.isOpened():
                raise UserError(f"{self.root}: OpenCV cannot write MP4 (mp4v) video here")
        self.video.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if index in self.sheet_at:
            cell = SHEET_WIDTH // SHEET_COLUMNS
            height = max(1, round(image.shape[0] * cell / image.shape[1]))
            self.sheet.append(cv2.resize(image, (cell, height), interpolation=cv2.INTER_AREA))

    def close(self, summary: dict[str, Any]) -> None:
        self.lines.close()
        if self.video is not None:
            self.video.release()
        if self.sheet:
            write_png(self.root / "contact_sheet.png", contact_sheet(self.sheet, SHEET_COLUMNS))
        (self.root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    def abort(self) -> None:
        self.lines.close()
        if self.video is not None:
            self.video.release()


def contact_sheet(images: Sequence[np.ndarray], columns: int) -> np.ndarray:
    """Images of one size in a grid, row by row; empty cells black."""
    rows = -(-len(images) // columns)
    h, w = images[0].shape[:2]
    sheet = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
    return sheet
