"""The `eval` stage: score a predictions artifact (or motion masks) against the dataset's GT.

Reads the prediction maps of one split from Zarr, the GT instances through the dataset
adapter (prepared at the prediction resolution as the protocol says, ``stages.groundtruth``),
scores them with ``stages.metrics`` under the protocol's rules (``stages.protocols``) and
writes an ``eval`` artifact: ``scores.json`` (every dataset-level number, and the protocol
that made them), ``per_frame.csv`` (and ``per_clip.csv`` at clip granularity).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages import metrics, protocols
from stages.artifacts import (
    Artifact,
    ArtifactStore,
    atomic_write_bytes,
    atomic_write_json,
    read_json,
)
from stages.datasets import Dataset, Video, open_dataset
from stages.errors import UserError
from stages.lidar.projection import valid
from stages.progress import log, track
from stages.zarrstore import MASKS_STORE, PREDICTIONS_STORE, open_video, video_names

STAGE = "eval"
FORMAT_VERSION = 2  # 2: by_group, by_condition, pixels
GRANULARITIES = ("frame", "clip")
#: ARI samples when neither the options nor the protocol fix them: frames; clips of 5
DEFAULT_GRANULARITY, DEFAULT_CLIP_LEN = "frame", 5
#: ``--predictions`` / ``--masks`` value that means "the newest complete artifact"
LATEST = "latest"
#: which pixels are scored: every one (the paper's, 3D and fused maps included), or only
#: those where the LiDAR has a point on the map's grid (SPEC-xMOD.md 5: a diagnostic)
PIXELS = ("all", "lidar")
#: where each scorable source stage keeps its maps
SOURCES = {"export": (PREDICTIONS_STORE, "slots"), "masks": (MASKS_STORE, "masks")}


@dataclass
class EvalConfig:
    """What to score and how. ``predictions`` / ``masks``: an artifact id (prefix) or
    ``latest``; neither means the newest complete export artifact. ``granularity`` and
    ``clip_len`` None: the protocol's samples where it fixes them, else the defaults."""

    dataset: str
    split: str = "val"
    predictions: str | None = None
    masks: str | None = None
    protocol: str = "diod"
    granularity: str | None = None
    clip_len: int | None = None
    pixels: str = "all"
    root: Path | str | None = None
    force: bool = False


@dataclass
class _VideoMaps:
    """One video's prediction maps as the metrics want them."""

    labels: np.ndarray  # (T, h, w) ids
    background: int | None
    scores: np.ndarray | None  # (T, K) or None for "score 1"
    frame_names: list[str]
    cropped_rows: int | None = None  # map rows standing for the frame's cropped top


def _source(store: ArtifactStore, config: EvalConfig) -> Artifact:
    if config.predictions is not None and config.masks is not None:
        raise UserError("--predictions and --masks are exclusive: score one artifact at a time")
    stage, ref = (
        ("masks", config.masks) if config.masks is not None else ("export", config.predictions)
    )
    return store.resolve(config.dataset, stage, None if ref in (None, LATEST) else ref)


def dataset_root(store: ArtifactStore, art: Artifact) -> Path:
    """The dataset root recorded by the artifact or its nearest ancestor (``params.root``)."""
    for ancestor in store.lineage(art):
        if ancestor.params.get("root"):
            return Path(ancestor.params["root"])
    raise UserError(
        f"--root: not given, and neither {art} nor its upstream artifacts record a dataset root"
    )


def _attr(group: Any, key: str, where: str) -> Any:
    if key not in group.attrs:
        raise UserError(f"{where}: missing group attribute '{key}'")
    return group.attrs[key]


def _read_maps(art: Artifact, split: str, name: str) -> _VideoMaps:
    store, array = SOURCES[art.stage]
    group = open_video(art, store, split, name)
    where = f"{art.path / store / split / name}"
    if array not in group:
        raise UserError(f"{where}: no '{array}' array ({art.stage} artifact {art.id})")
    labels = np.asarray(group[array][:])
    if labels.ndim != 3 or labels.dtype.kind not in "ui" or not len(labels):
        raise UserError(
            f"{where}/{array}: expected (T, h, w) integer ids with T > 0, found {labels.dtype} "
            f"{labels.shape}"
        )
    frames = len(labels)
    names = [str(n) for n in group.attrs.get("frame_names", [])]
    if names and len(names) != frames:
        raise UserError(f"{where}: {len(names)} frame_names for {frames} frames of '{array}'")
    if art.stage == "masks":
        return _VideoMaps(labels, 0, None, names)
    cropped = group.attrs.get("cropped_rows")

    num_slots = int(_attr(group, "num_slots", where))
    background = int(group.attrs.get("background_slot", num_slots - 1))
    if not 0 <= background < num_slots:
        raise UserError(f"{where}: background_slot {background} outside 0..{num_slots - 1}")
    if labels.size and int(labels.max()) >= num_slots:
        raise UserError(f"{where}/slots: slot id {int(labels.max())} >= num_slots {num_slots}")
    scores = None
    if "scores" in group:
        scores = np.asarray(group["scores"][:], dtype=np.float64)
        if scores.shape != (frames, num_slots):
            raise UserError(
                f"{where}/scores: expected shape {(frames, num_slots)}, found {scores.shape}"
            )
    elif "soft" in group:
        soft = group["soft"]
        if soft.shape != (frames, num_slots, *labels.shape[1:]):
            raise UserError(
                f"{where}/soft: expected shape {(frames, num_slots, *labels.shape[1:])}, found {soft.shape}"
            )
        scores = np.zeros((frames, num_slots))
        for t in range(frames):  # frame by frame: a video's soft maps can be gigabytes
            scores[t] = segment_mean(np.asarray(soft[t : t + 1], np.float32), labels[t : t + 1])[0]
    return _VideoMaps(labels, background, scores, names, None if cropped is None else int(cropped))


def segment_mean(soft: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(T, K) mean of ``soft[t, k]`` over the pixels where ``labels[t] == k`` (0 if none):
    the confidence docs/eval.md gives a segment when only the soft maps were stored."""
    frames, slots = soft.shape[:2]
    own = np.take_along_axis(soft, labels[:, None].astype(np.int64), axis=1)[:, 0]
    codes = (np.arange(frames)[:, None, None] * slots + labels).ravel()
    sums = np.bincount(codes, weights=own.ravel(), minlength=frames * slots)
    areas = np.bincount(codes, minlength=frames * slots)
    return np.divide(sums, areas, out=np.zeros(frames * slots), where=areas > 0).reshape(
        frames, slots
    )


def _frame_indices(video: Video, names: list[str], frames: int, where: str) -> list[int]:
    """Dataset frame index of each predicted frame, matched by name."""
    if not names:
        if frames != len(video):
            raise UserError(
                f"{where}: {frames} frames without frame_names, but video '{video.name}' has {len(video)}"
            )
        return list(range(frames))
    index = {n: i for i, n in enumerate(video.frames)}
    missing = [n for n in names if n not in index]
    if missing:
        raise UserError(
            f"{where}: frame '{missing[0]}' is not a frame of dataset video '{video.name}'"
        )
    return [index[n] for n in names]


def _csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return buf.getvalue().encode()


def _json_safe(obj: Any) -> Any:
    """NaN (an undefined ratio) becomes null: JSON has no NaN."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _samples(proto: protocols.Protocol, config: EvalConfig) -> tuple[str, int | None]:
    """(granularity, clip length or None) of the ARI samples: the protocol's where it fixes
    them (an option asking for others is an error), else the options or the defaults."""
    if config.granularity is not None and config.granularity not in GRANULARITIES:
        raise UserError(
            f"--granularity {config.granularity}: expected one of {', '.join(GRANULARITIES)}"
        )
    if config.clip_len is not None and config.clip_len < 1:
        raise UserError(f"--clip-len {config.clip_len}: expected a positive number of frames")
    if proto.sample is not None:
        granularity, clip_len = proto.sample
        fixed = f"clips of {clip_len} frames" if granularity == "clip" else "single frames"
        for flag, given, wanted in (
            ("--granularity", config.granularity, granularity),
            ("--clip-len", config.clip_len, clip_len),
        ):
            if None not in (given, wanted) and given != wanted:
                raise UserError(
                    f"{flag} {given}: the {proto.name} protocol for {config.dataset} scores the "
                    f"ARI on {fixed}; leave the option out or use --protocol diod"
                )
        return granularity, clip_len
    granularity = config.granularity or DEFAULT_GRANULARITY
    return granularity, (config.clip_len or DEFAULT_CLIP_LEN) if granularity == "clip" else None


def _check_source(proto: protocols.Protocol, source: Artifact) -> list[str]:
    """How the scored predictions were not made as the protocol runs the model (each
    difference logged as a warning: the scores are then not the protocol's). A protocol
    that scores a model's run refuses motion masks."""
    if not proto.model_run:
        return []
    if source.stage != "export":
        raise UserError(
            f"--masks: the {proto.name} protocol scores a model's predictions (segments ranked "
            "by the model's confidence); score motion masks with --protocol diod"
        )
    found = proto.export.deviations(source.params, proto.name)
    if found:
        log.warning(
            "predictions %s were not made as the %s protocol runs the model: %s; the scores "
            "are not the protocol's (re-run `diod export --protocol %s`)",
            source,
            proto.name,
            ", ".join(found),
            proto.name,
        )
    return found


def _scored_maps(proto: protocols.Protocol, maps: _VideoMaps, where: str) -> np.ndarray:
    """The prediction maps the protocol scores (the model's input region, if it says so)."""
    if proto.model_run and maps.scores is None:
        raise UserError(
            f"{where}: no 'scores' or 'soft' array: the {proto.name} protocol ranks segments by "
            "the model's confidence; re-run `diod export`"
        )
    if not proto.input_region:
        return maps.labels
    if maps.cropped_rows is None:
        raise UserError(
            f"{where}: no 'cropped_rows' attribute (an export older than --protocol); re-run "
            f"`diod export --protocol {proto.name}`"
        )
    return maps.labels[:, maps.cropped_rows :]


def _lidar_pixels(
    ds: Dataset, video: Video, indices: list[int], size: tuple[int, int]
) -> np.ndarray:
    """(T, h, w) bool: where each scored frame's LiDAR sweep has a point on the map grid."""
    maps = [ds.lidar(video, i, size) for i in indices]
    if any(m is None for m in maps):
        raise UserError(
            f"--pixels lidar: video {video.name} of {ds.root} has no LiDAR sweeps "
            "(score it with --pixels all)"
        )
    return np.stack([valid(m) for m in maps])


def evaluate(store: ArtifactStore, config: EvalConfig) -> Artifact:
    """Score the source artifact's ``config.split`` and publish the ``eval`` artifact."""
    proto = protocols.protocol(config.protocol, config.dataset)
    if config.pixels not in PIXELS:
        raise UserError(f"--pixels {config.pixels}: expected one of {', '.join(PIXELS)}")
    if config.pixels == "lidar" and proto.input_region:
        raise UserError(
            f"--pixels lidar: the {proto.name} protocol scores a crop of the maps; "
            "use --protocol diod"
        )
    granularity, clip_len = _samples(proto, config)
    source = _source(store, config)
    deviations = _check_source(proto, source)
    root = Path(config.root) if config.root is not None else dataset_root(store, source)
    ds = open_dataset(config.dataset, root)
    names = video_names(source, SOURCES[source.stage][0], config.split)
    if not names:
        raise UserError(
            f"--split {config.split}: {source.stage} artifact {source.id} has no videos in it"
        )
    dataset_videos = {v.name for v in ds.videos(config.split)}
    outside = sorted(
        n for n in names if n in dataset_videos and not proto.videos(ds.video(config.split, n))
    )
    if outside:
        log.info(
            "%d video(s) are not scored by the %s protocol (first: %s)",
            len(outside),
            proto.name,
            outside[0],
        )
    params = {
        "protocol": proto.name,
        "split": config.split,
        "granularity": granularity,
        "clip_len": clip_len,
        "pixels": config.pixels,
        "root": str(root.resolve()),
        "iou_thresholds": list(metrics.IOU_THRESHOLDS),
        "size_edges": list(metrics.SIZE_EDGES),
        **proto.params,
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
        evaluation = metrics.Evaluation(clip_len, ari=proto.ari, video_scores=proto.video_scores)
        missing = sorted(dataset_videos - set(names))
        if missing:
            log.warning(
                "%d video(s) of split %s have no predictions and are not scored (first: %s)",
                len(missing),
                config.split,
                missing[0],
            )
        for name in track([n for n in names if n not in outside], f"eval {config.split}"):
            video = ds.video(config.split, name)
            maps = _read_maps(source, config.split, name)
            where = f"{source.path / SOURCES[source.stage][0] / config.split / name}"
            labels = _scored_maps(proto, maps, where)
            indices = _frame_indices(video, maps.frame_names, len(labels), where)
            scored = [k for k, i in enumerate(indices) if proto.frames is None or i < proto.frames]
            if not scored:
                continue
            indices, labels = [indices[k] for k in scored], labels[scored]
            gt = proto.ground_truth(ds, video, indices, labels.shape[1:])
            evaluation.add_video(
                name,
                gt.maps,
                labels,
                background=maps.background,
                scores=None if maps.scores is None else maps.scores[scored],
                moving_ids=gt.moving_ids,
                groups=ds.object_groups(video),
                conditions=ds.conditions(video),
                frame_names=[video.frames[i] for i in indices],
                valid=None
                if config.pixels == "all"
                else _lidar_pixels(ds, video, indices, labels.shape[1:]),
            )
        scores = _json_safe(
            {
                **evaluation.summary(),
                "protocol": proto.name,
                "export_deviations": deviations,
                "split": config.split,
                "source": {"stage": source.stage, "id": source.id},
                "videos_without_predictions": missing,
                "videos_outside_protocol": outside,
            }
        )
        atomic_write_json(writer.path / "scores.json", scores)
        atomic_write_bytes(writer.path / "per_frame.csv", _csv(evaluation.per_frame()))
        if clip_len is not None:
            atomic_write_bytes(writer.path / "per_clip.csv", _csv(evaluation.per_clip()))
        headline = {
            k: scores[k]
            for k in ("protocol", "fg_ari", "all_ari", "f1_50", "n_samples", "n_gt", "n_pred")
        }
        log.info("scored %s: %s", source, headline)
        return writer.complete(headline)


def read_scores(art: Artifact) -> dict[str, Any]:
    """``scores.json`` of a complete eval artifact."""
    return read_json(art.path / "scores.json")
