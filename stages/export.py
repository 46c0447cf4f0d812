"""The `export` stage: run a trained model over whole videos and write its predictions.

Videos are run as ``stages.predict`` says (clips of T, each from a fresh state).

Output (stage ``export``, upstream {"burnin" | "distill": id}), ``predictions.zarr`` with a
group per ``<split>/<video>``: ``slots`` (T, h, w) uint8 argmax slot id, ``scores`` (T, K)
float32 mean soft attention of slot k inside its argmax segment (0 where empty), optional
``soft`` (T, K, h, w) float16; attrs num_slots, background_slot, height, width,
source_height, source_width, frame_names, split. Optional colour overlays of the slots on
the frames: ``overlays/<split>/<video>/<frame>.png`` and ``overlays/<split>/<video>.mp4``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stages import modelfile
from stages.artifacts import Artifact, ArtifactStore, ArtifactWriter
from stages.datasets import Dataset, Video, open_dataset
from stages.errors import UserError
from stages.evaluate import dataset_root
from stages.frames import FULL, crop_resize_rgb
from stages.hardware import model_precision, resolve_device
from stages.overlays import overlay, palette
from stages.predict import Predictor, argmax_scores
from stages.progress import log, track
from stages.train import checkpoint
from stages.zarrstore import PREDICTIONS_STORE, frame_array, has_video, write_video

STAGE = "export"
FORMAT_VERSION = 1


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
    if ref is None:
        for stage in checkpoint.MODEL_STAGES:
            if any(a.is_complete for a in store.list(dataset, stage)):
                return store.latest(dataset, stage)
        raise UserError(
            f"no complete burnin or distill artifact for dataset '{dataset}' in {store.workspace}: "
            "run `diod train` first"
        )
    return checkpoint.find_trained(store, ref, dataset)


# -- overlays -------------------------------------------------------------------------------
def _write_overlays(
    writer: ArtifactWriter,
    config: ExportConfig,
    video: Video,
    frames: list[np.ndarray],
    slots: np.ndarray,
    background: int,
) -> None:
    colours = palette(background + 1, background)
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


def export(store: ArtifactStore, config: ExportConfig) -> Artifact:
    """Predict every video of ``config.split`` and publish the predictions artifact."""
    source = model_artifact(store, config.dataset, config.model)
    loaded = modelfile.from_artifact(source, config.which)
    model, geometry = loaded.model, loaded.geometry
    if (config.clip_length is not None and config.clip_length < 1) or config.batch_size < 1:
        raise UserError("--clip-length and --batch-size: expected positive integers")
    if model.config.num_slots > 256:
        raise UserError(
            f"model {source} has {model.config.num_slots} slots: the uint8 'slots' array holds at most 256"
        )
    device = resolve_device(config.device)
    predictor = Predictor(
        model=model.to(device).eval(),
        input_size=geometry.size,
        crop_top=geometry.crop_top,
        clip_length=config.clip_length or geometry.clip_length,
        batch_size=config.batch_size,
        device=device,
        precision=model_precision(config.precision, device),
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
            if has_video(writer, PREDICTIONS_STORE, config.split, video.name) and not need_overlays:
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
    if has_video(writer, PREDICTIONS_STORE, video.split, video.name):  # only overlays missing
        for first, maps in stream:
            all_slots[first : first + len(maps)] = maps.argmax(1).cpu().numpy()
        return all_slots
    with write_video(writer, PREDICTIONS_STORE, video.split, video.name, attrs) as group:
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
