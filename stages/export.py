"""The `export` stage: run a trained model over whole videos and write its predictions.

Videos are run as ``stages.predict`` says (clips of T, each from a fresh state), with the
model-run settings of a protocol (``stages.protocols``: which network, BatchNorm mode, clip
length, batch, precision; ``--protocol paper`` runs the model as the authors' evaluation did).
An xmod model runs one of its networks (``modality`` rgb or lidar) or both, their maps of
each frame late-fused (``fused``, ``stages.fusion``) and written as one network's.

Output (stage ``export``, upstream {"burnin" | "distill" | "xmod": id}), ``predictions.zarr`` with a
group per ``<split>/<video>``: ``slots`` (T, h, w) uint8 argmax slot id, ``scores`` (T, K)
float32 mean soft attention of slot k inside its argmax segment (0 where empty), optional
``soft`` (T, K, h, w) float16; attrs num_slots, background_slot, height, width,
source_height, source_width, frame_names, split, clip_length, cropped_rows (top map rows
standing for the frame's cropped top). Optional colour overlays of the slots on the frames:
``overlays/<split>/<video>/<frame>.png`` and ``overlays/<split>/<video>.mp4``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from stages import modelfile, protocols
from stages.artifacts import Artifact, ArtifactStore, ArtifactWriter
from stages.datasets import Dataset, Video, open_dataset
from stages.errors import UserError
from stages.evaluate import dataset_root
from stages.frames import FULL, crop_resize_rgb
from stages.fusion import FUSION_IOU, fuse_maps
from stages.hardware import PRECISION, model_precision, resolve_device
from stages.overlays import overlay, palette
from stages.predict import Predictor, argmax_scores, use_batch_statistics
from stages.progress import log, track
from stages.train import checkpoint
from stages.zarrstore import PREDICTIONS_STORE, frame_array, has_video, write_video

STAGE = "export"
FORMAT_VERSION = 1


@dataclass
class ExportConfig:
    """What to predict and how. The fields that default to None are the model-run settings
    of ``protocols.ExportSettings``: None takes the protocol's (``diod``: the export's own
    defaults); under a protocol that fixes them (``paper``) a different value is an error."""

    dataset: str
    split: str = "val"
    model: str | None = None  # burnin/distill/xmod artifact id (prefix); None: the newest
    modality: str | None = None  # an xmod model's network: rgb (None), lidar, or both fused
    protocol: str = "diod"
    which: str | None = None  # for distill artifacts; burn-in has one network
    batchnorm: str | None = None  # "eval": running statistics; "train": each batch's
    root: Path | str | None = None
    clip_length: int | None = None  # 1: every frame alone; unset by the protocol: training T
    batch_size: int | None = None  # clips per forward pass
    device: str = "auto"
    precision: str | None = None
    soft: bool = False
    png: bool = False
    mp4: bool = False
    fps: float = 10.0
    force: bool = False


def run_settings(config: ExportConfig) -> protocols.ExportSettings:
    """The settings the model runs with: the options given, the protocol's for the others."""
    proto = protocols.protocol(config.protocol, config.dataset)
    chosen = {}
    for key, wanted in vars(proto.export).items():
        given = getattr(config, key)
        if proto.model_run and None not in (given, wanted) and given != wanted:
            flag = f"--{key.replace('_', '-')}"
            raise UserError(
                f"{flag} {given}: the {proto.name} protocol runs the model with {flag} "
                f"{wanted}; leave the option out, or drop --protocol {proto.name}"
            )
        chosen[key] = wanted if given is None else given
    settings = protocols.ExportSettings(**chosen)
    if settings.batchnorm not in protocols.BATCHNORM_MODES:
        raise UserError(
            f"--batchnorm {settings.batchnorm}: expected one of "
            f"{', '.join(protocols.BATCHNORM_MODES)}"
        )
    if (settings.clip_length is not None and settings.clip_length < 1) or settings.batch_size < 1:
        raise UserError("--clip-length and --batch-size: expected positive integers")
    return settings


# -- model ----------------------------------------------------------------------------------
def model_artifact(store: ArtifactStore, dataset: str, ref: str | None) -> Artifact:
    """A complete burn-in or distill artifact: ``ref`` = an id (prefix), or a stage name
    (its newest complete artifact), or None (the newest xmod, else distill, else burn-in)."""
    if ref is None:
        for stage in checkpoint.MODEL_STAGES:
            if any(a.is_complete for a in store.list(dataset, stage)):
                return store.latest(dataset, stage)
        raise UserError(
            f"no complete trained model (burnin, distill, xmod) for dataset '{dataset}' in {store.workspace}: "
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
    run = run_settings(config)
    source = model_artifact(store, config.dataset, config.model)
    device = resolve_device(config.device)
    if config.modality == "fused":
        if source.stage != "xmod":
            raise UserError(
                f"--modality fused: {source} has one network; late fusion runs an xmod "
                "model's RGB and LiDAR networks together"
            )
        predictors = [_predictor(source, run, modality, device) for modality in ("rgb", "lidar")]
        _check_fusable(source, *predictors)
    else:
        predictors = [_predictor(source, run, config.modality or "rgb", device)]
        if config.modality not in (None, predictors[0].model.config.modality):
            raise UserError(
                f"--modality {config.modality}: {source} is a "
                f"{predictors[0].model.config.modality} model (only an xmod model has both "
                "networks)"
            )
    predictor = predictors[0]
    model = predictor.model
    root = Path(config.root) if config.root is not None else dataset_root(store, source)
    ds = open_dataset(config.dataset, root)
    videos = ds.videos(config.split)
    which = run.which if source.stage != "burnin" else "model"
    params = {
        "split": config.split,
        "which": which,
        "batchnorm": run.batchnorm,
        # in eval mode the batch does not change a prediction, so it is no part of the id
        "batch_size": run.batch_size if run.batchnorm == "train" else None,
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
    if source.stage == "xmod":  # which of its two networks, or both fused
        params["modality"] = config.modality or "rgb"
    if config.modality == "fused":
        params["fusion_iou"] = FUSION_IOU
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

        def need_overlays(video: Video) -> bool:
            base = f"overlays/{video.split}/{video.name}"
            return (config.png and not writer.has_item(base)) or (
                config.mp4 and not writer.has_item(f"{base}.mp4")
            )

        todo = [
            v
            for v in videos
            if need_overlays(v) or not has_video(writer, PREDICTIONS_STORE, config.split, v.name)
        ]
        streams = _streams(predictors, ds, todo)
        done = 0
        for video, stream in track(
            zip(todo, streams, strict=True), f"export {config.split}", total=len(todo)
        ):
            slots = _export_video(writer, ds, video, predictor, stream, config.soft)
            if need_overlays(video):
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
                "batchnorm": run.batchnorm,
            }
        )


def _predictor(
    source: Artifact, run: protocols.ExportSettings, modality: str, device: torch.device
) -> Predictor:
    """One network of ``source`` (``modality``'s, for an xmod model) loaded to run."""
    loaded = modelfile.from_artifact(source, run.which, modality)
    model, geometry = loaded.model, loaded.geometry
    if model.config.num_slots > 256:
        raise UserError(
            f"model {source} has {model.config.num_slots} slots: the uint8 'slots' array "
            "holds at most 256"
        )
    model.to(device).eval()
    if run.batchnorm == "train":
        use_batch_statistics(model)
    if device.type == "cuda":
        model.use_channels_last()
    return Predictor(
        model=model,
        input_size=geometry.size,
        crop_top=geometry.crop_top,
        clip_length=run.clip_length or geometry.clip_length,
        batch_size=run.batch_size,
        device=device,
        precision=model_precision(run.precision or PRECISION.default, device),
    )


def _check_fusable(source: Artifact, rgb: Predictor, lidar: Predictor) -> None:
    """Late fusion pairs the two networks' slots on one grid: they must agree on it."""
    shape = [
        (p.map_size, p.model.config.num_slots, p.model.config.background_slot) for p in (rgb, lidar)
    ]
    if shape[0] != shape[1]:
        raise UserError(
            f"--modality fused: the networks of {source} differ in (map size, slots, background "
            f"slot): rgb {shape[0]}, lidar {shape[1]}; fusion needs one grid and one slot layout"
        )


def _streams(
    predictors: list[Predictor], ds: Dataset, videos: list[Video]
) -> Iterator[Iterator[tuple[int, torch.Tensor]]]:
    """Per video, its stream of (first frame, maps): one network's, or (two predictors) the
    RGB and LiDAR networks' maps of the same frames fused (``stages.fusion``)."""
    runs = [p.each_video([(p.video_inputs(ds, v), len(v)) for v in videos]) for p in predictors]
    if len(runs) == 1:
        return runs[0]
    background = predictors[0].model.config.background_slot

    def fused(rgb: Iterator, lidar: Iterator) -> Iterator[tuple[int, torch.Tensor]]:
        for (first, rgb_maps), (_, lidar_maps) in zip(rgb, lidar, strict=True):
            yield first, fuse_maps(rgb_maps, lidar_maps, background)

    return (fused(rgb, lidar) for rgb, lidar in zip(*runs, strict=True))


def _export_video(
    writer: ArtifactWriter,
    ds: Dataset,
    video: Video,
    predictor: Predictor,
    stream: Iterator[tuple[int, torch.Tensor]],
    soft: bool,
) -> np.ndarray:
    """Write one video's group (unless already published) from its stream of (first frame,
    maps) and return its slot ids."""
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
        "cropped_rows": predictor.cropped_rows,
    }
    all_slots = np.zeros((n, h, w), np.uint8)
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
