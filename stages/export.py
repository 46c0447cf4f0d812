"""The `export` stage: run a trained model over whole videos and write its predictions.

How videos are run: in consecutive clips of T frames (T = the training clip length unless
``clip_length`` says otherwise), each clip starting from a zero ConvGRU state and the fixed
initial slots, exactly as the model saw clips in training; a video whose length is not a
multiple of T ends with the clip of its last T frames, of which only the frames not yet
predicted are kept. Slots are carried within a clip, not across clips: a recurrent state
carried over hundreds of frames is a regime the model never trained in. ``clip_length=1``
runs every frame alone (the KITTI protocol, whose test set is single images).

Output (stage ``export``, upstream {"burnin" | "distill": id}), ``predictions.zarr`` with a
group per ``<split>/<video>``: ``slots`` (T, h, w) uint8 argmax slot id, ``scores`` (T, K)
float32 mean soft attention of slot k inside its argmax segment (0 where empty), optional
``soft`` (T, K, h, w) float16; attrs num_slots, background_slot, height, width,
source_height, source_width, frame_names, split. Optional colour overlays of the slots on
the frames: ``overlays/<split>/<video>/<frame>.png`` and ``overlays/<split>/<video>.mp4``.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from stages.artifacts import Artifact, ArtifactStore, ArtifactWriter
from stages.datasets import Dataset, Video, open_dataset
from stages.errors import UserError
from stages.evaluate import dataset_root
from stages.model import DIOD
from stages.progress import log, track
from stages.train import checkpoint
from stages.train.data import FULL, crop_resize_rgb, region
from stages.train.loop import Distributed, autocast, resolve_device, resolve_precision
from stages.zarrstore import frame_array, has_video, write_video

STAGE = "export"
FORMAT_VERSION = 1
STORE = "predictions.zarr"
MODEL_STAGES = ("distill", "burnin")
WHICH = ("teacher", "student")


@dataclass
class ExportConfig:
    dataset: str
    split: str = "val"
    model: str | None = (
        None  # burnin/distill artifact id (prefix); None: newest distill, else burnin
    )
    which: str = "teacher"  # for distill artifacts; burn-in has one network
    root: Path | str | None = None
    clip_length: int | None = None  # None: the training T; 1: every frame alone
    batch_size: int = 4  # clips per forward pass
    device: str = "auto"
    precision: str = "auto"
    soft: bool = False
    png: bool = False
    mp4: bool = False
    fps: float = 10.0
    force: bool = False


# -- model ----------------------------------------------------------------------------------
def model_artifact(store: ArtifactStore, dataset: str, ref: str | None) -> Artifact:
    """A complete burn-in or distill artifact: ``ref`` = an id (prefix), or a stage name
    (its newest complete artifact), or None (the newest distill, else the newest burn-in)."""
    if ref in MODEL_STAGES:
        return store.latest(dataset, ref)
    if ref is None:
        for stage in MODEL_STAGES:
            if any(a.is_complete for a in store.list(dataset, stage)):
                return store.latest(dataset, stage)
        raise UserError(
            f"no complete burnin or distill artifact for dataset '{dataset}' in {store.workspace}: "
            "run `diod train` first"
        )
    found = [
        a for stage in MODEL_STAGES for a in store.list(dataset, stage) if a.id.startswith(ref)
    ]
    if not found:
        raise UserError(
            f"--model {ref}: no burnin or distill artifact with this id for dataset '{dataset}'"
        )
    if len(found) > 1:
        raise UserError(f"--model {ref}: ambiguous prefix ({', '.join(str(a) for a in found)})")
    return store.get(dataset, found[0].stage, found[0].id)


def load_model(art: Artifact, which: str) -> tuple[DIOD, dict[str, Any]]:
    """The network to export and its checkpoint: a distill artifact's teacher (EMA, the
    better and steadier model, as in the paper) or student; a burn-in artifact's model."""
    if which not in WHICH:
        raise UserError(f"--which {which}: expected one of {', '.join(WHICH)}")
    state = checkpoint.final(art)
    key = "teacher" if art.stage == "distill" and which == "teacher" else "model"
    return checkpoint.model_from(state, key), state


# -- inference ------------------------------------------------------------------------------
def clip_windows(n_frames: int, clip_length: int) -> list[tuple[int, int, int]]:
    """(start, stop, first_new) of the clips covering a video: consecutive clips of T, the
    last one shifted back to end on the last frame (its frames before first_new were
    already predicted); a video shorter than T is one short clip."""
    if n_frames <= clip_length:
        return [(0, n_frames, 0)]
    windows = [(s, s + clip_length, s) for s in range(0, n_frames - clip_length + 1, clip_length)]
    covered = windows[-1][1]
    if covered < n_frames:
        windows.append((n_frames - clip_length, n_frames, covered))
    return windows


def to_input(frame: np.ndarray, size: tuple[int, int], crop_top: float = 0.0) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, h, w) float in [0, 1] at the model's input size, the top
    ``crop_top`` of the frame left out."""
    rgb = crop_resize_rgb(frame, region(crop_top), size)
    return (
        torch.from_numpy(np.require(rgb, requirements=["C", "W"]))
        .permute(2, 0, 1)
        .float()
        .div_(255)
    )


def cropped_rows(map_height: int, crop_top: float) -> int:
    """Map rows standing for the cropped top of the frame."""
    return round(map_height * crop_top / (1.0 - crop_top))


def frame_map_size(input_size: tuple[int, int], crop_top: float, stride: int) -> tuple[int, int]:
    """Size of the maps of the whole frame (cropped rows included) for a model input size."""
    h, w = input_size[0] // stride, input_size[1] // stride
    return h + cropped_rows(h, crop_top), w


def full_frame(maps: torch.Tensor, crop_top: float) -> torch.Tensor:
    """Maps of the cropped view (n, K, h, w) -> maps of the whole frame: the cropped top
    rows belong to the background slot, so predictions align with the frame (and its GT)."""
    rows = cropped_rows(maps.shape[2], crop_top)
    if rows == 0:
        return maps
    top = maps.new_zeros(maps.shape[0], maps.shape[1], rows, maps.shape[3])
    top[:, -1] = 1.0
    return torch.cat([top, maps], dim=2)


@torch.no_grad()
def predict_video(
    model: DIOD,
    frames: Iterable[np.ndarray],
    n_frames: int,
    input_size: tuple[int, int],
    clip_length: int,
    batch_size: int,
    device: torch.device,
    precision: str,
    crop_top: float = 0.0,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Stream (first frame index, attention maps (n, K, h, w) float32 on ``device``) over a
    video, in frame order, running ``batch_size`` clips per forward pass. Only the frames
    of the clips in flight are held in memory. With ``crop_top`` the maps cover the whole
    frame (see ``full_frame``)."""
    windows = clip_windows(n_frames, clip_length)
    held: dict[int, torch.Tensor] = {}
    pending: list[tuple[int, int, int]] = []
    next_window = 0
    i = -1

    def run(group: list[tuple[int, int, int]]) -> Iterator[tuple[int, torch.Tensor]]:
        clips = torch.stack([torch.stack([held[i] for i in range(a, b)]) for a, b, _ in group])
        with autocast(device, precision):
            masks = model(clips.to(device, non_blocking=True)).masks.float()
        for (a, _b, first), maps in zip(group, masks, strict=True):
            yield first, full_frame(maps[first - a :], crop_top)

    for i, frame in enumerate(frames):
        if i >= n_frames:
            break
        held[i] = to_input(frame, input_size, crop_top)
        while next_window < len(windows) and windows[next_window][1] == i + 1:
            pending.append(windows[next_window])
            next_window += 1
        if len(pending) == batch_size or (pending and next_window == len(windows)):
            yield from run(pending)
            keep_from = windows[next_window][0] if next_window < len(windows) else n_frames
            held = {k: v for k, v in held.items() if k >= keep_from}
            pending = []
    if next_window < len(windows):
        raise UserError(f"video ended after {i + 1} frames, expected {n_frames}")


def argmax_scores(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """maps (n, K, h, w) -> argmax slot ids (n, h, w) and scores (n, K): the mean soft
    attention of each slot inside its argmax segment (0 where the segment is empty).
    Inside slot k's segment its map is the per-pixel maximum, so the sums are a scatter of
    the maxima."""
    n, k = maps.shape[:2]
    top, ids = maps.max(dim=1)
    flat_ids = ids.flatten(1)
    sums = torch.zeros(n, k, device=maps.device).scatter_add_(1, flat_ids, top.flatten(1))
    areas = torch.zeros(n, k, device=maps.device).scatter_add_(
        1, flat_ids, torch.ones_like(top.flatten(1))
    )
    return ids, torch.where(areas > 0, sums / areas.clamp(min=1), torch.zeros_like(sums))


# -- overlays -------------------------------------------------------------------------------
def palette(num_slots: int) -> np.ndarray:
    """(K, 3) uint8 RGB, well-separated hues (golden-ratio steps); the background slot black."""
    colours = [
        colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 1.0) for i in range(num_slots)
    ]
    out = (np.array(colours) * 255).astype(np.uint8)
    out[-1] = 0
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


def _write_overlays(
    writer: ArtifactWriter,
    config: ExportConfig,
    video: Video,
    frames: list[np.ndarray],
    slots: np.ndarray,
    background: int,
) -> None:
    colours = palette(background + 1)
    images = [overlay(f, s, colours, background) for f, s in zip(frames, slots, strict=True)]
    base = f"overlays/{video.split}/{video.name}"
    if config.png and not writer.has_item(base):
        with writer.staging(base) as tmp:
            for name, img in zip(video.frames, images, strict=True):
                cv2.imwrite(str(tmp / f"{name}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if config.mp4 and not writer.has_item(f"{base}.mp4"):
        with writer.staging(f"{base}.mp4", is_dir=False) as tmp:
            path = tmp.with_suffix(".mp4")
            h, w = images[0].shape[:2]
            out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), config.fps, (w, h))
            if not out.isOpened():
                raise UserError(f"{path}: OpenCV cannot write MP4 (mp4v) video on this machine")
            for img in images:
                out.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            out.release()
            path.rename(tmp)


# -- the stage ------------------------------------------------------------------------------
@dataclass
class Predictor:
    """A loaded model and how to run it over videos."""

    model: DIOD
    input_size: tuple[int, int]
    crop_top: float
    clip_length: int
    batch_size: int
    device: torch.device
    precision: str

    @property
    def map_size(self) -> tuple[int, int]:
        return frame_map_size(self.input_size, self.crop_top, self.model.stride)

    def __call__(
        self, frames: Iterable[np.ndarray], n_frames: int
    ) -> Iterator[tuple[int, torch.Tensor]]:
        return predict_video(
            self.model,
            frames,
            n_frames,
            self.input_size,
            self.clip_length,
            self.batch_size,
            self.device,
            self.precision,
            self.crop_top,
        )


def export(store: ArtifactStore, config: ExportConfig) -> Artifact:
    """Predict every video of ``config.split`` and publish the predictions artifact."""
    source = model_artifact(store, config.dataset, config.model)
    model, state = load_model(source, config.which)
    trained = state["config"]
    if (config.clip_length is not None and config.clip_length < 1) or config.batch_size < 1:
        raise UserError("--clip-length and --batch-size: expected positive integers")
    if model.config.num_slots > 256:
        raise UserError(
            f"model {source} has {model.config.num_slots} slots: the uint8 'slots' array holds at most 256"
        )
    device = resolve_device(config.device, Distributed())
    predictor = Predictor(
        model=model.to(device).eval(),
        input_size=tuple(trained["input_size"]),
        crop_top=float(trained.get("crop_top", 0.0)),
        clip_length=config.clip_length or int(trained["clip_length"]),
        batch_size=config.batch_size,
        device=device,
        precision=resolve_precision(config.precision, device),
    )
    if device.type == "cuda":
        model.use_channels_last()
    root = Path(config.root) if config.root is not None else dataset_root(store, source)
    ds = open_dataset(config.dataset, root)
    videos = ds.videos(config.split)
    which = config.which if source.stage == "distill" else "model"
    params = {
        "split": config.split,
        "which": which,
        "root": str(Path(root).resolve()),
        "clip_length": predictor.clip_length,
        "input_size": list(predictor.input_size),
        "crop_top": predictor.crop_top,
        "precision": predictor.precision,
        "soft": config.soft,
        "png": config.png,
        "mp4": config.mp4,
        "fps": config.fps if config.mp4 else None,
    }
    with store.open(
        config.dataset,
        STAGE,
        params,
        {source.stage: source},
        format_version=FORMAT_VERSION,
        force=config.force,
    ) as writer:
        if writer.was_complete:
            return writer.artifact()
        done = 0
        for video in track(videos, f"export {config.split}"):
            base = f"overlays/{video.split}/{video.name}"
            need_overlays = (config.png and not writer.has_item(base)) or (
                config.mp4 and not writer.has_item(f"{base}.mp4")
            )
            if has_video(writer, STORE, config.split, video.name) and not need_overlays:
                continue
            slots = _export_video(writer, ds, video, predictor, config.soft)
            if need_overlays:
                h, w = predictor.map_size
                size = (h * model.stride, w * model.stride)
                frames = [crop_resize_rgb(f, FULL, size) for f in ds.iter_frames(video)]
                _write_overlays(writer, config, video, frames, slots, model.config.background_slot)
            writer.record(f"{config.split}/{video.name}", {"frames": len(video)})
            done += 1
        log.info("exported %d video(s) of %s with %s %s", done, config.split, source, which)
        return writer.complete(
            {
                "videos": len(videos),
                "frames": sum(len(v) for v in videos),
                "model": str(source),
                "which": which,
            }
        )


def _export_video(
    writer: ArtifactWriter, ds: Dataset, video: Video, predictor: Predictor, soft: bool
) -> np.ndarray:
    """Write one video's group (unless already published) and return its slot ids."""
    n = len(video)
    h, w = predictor.map_size
    num_slots = predictor.model.config.num_slots
    source_h, source_w = ds.frame_size(video)
    attrs = {
        "num_slots": num_slots,
        "background_slot": predictor.model.config.background_slot,
        "height": h,
        "width": w,
        "source_height": int(source_h),
        "source_width": int(source_w),
        "frame_names": list(video.frames),
        "split": video.split,
        "clip_length": predictor.clip_length,
    }
    all_slots = np.zeros((n, h, w), np.uint8)
    stream = predictor(ds.iter_frames(video), n)
    if has_video(writer, STORE, video.split, video.name):  # only overlays missing
        for first, maps in stream:
            all_slots[first : first + len(maps)] = maps.argmax(1).cpu().numpy()
        return all_slots
    with write_video(writer, STORE, video.split, video.name, attrs) as group:
        slots_arr = frame_array(group, "slots", (n, h, w), np.uint8)
        scores_arr = frame_array(group, "scores", (n, num_slots), np.float32)
        soft_arr = frame_array(group, "soft", (n, num_slots, h, w), np.float16) if soft else None
        for first, maps in stream:
            ids, scores = argmax_scores(maps)
            stop = first + len(maps)
            all_slots[first:stop] = ids.cpu().numpy()
            slots_arr[first:stop] = all_slots[first:stop]
            scores_arr[first:stop] = scores.cpu().numpy()
            if soft_arr is not None:
                soft_arr[first:stop] = maps.half().cpu().numpy()
    return all_slots
