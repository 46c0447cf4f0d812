"""The masks stage: a flow artifact (or imported id PNGs) -> a versioned ``masks`` artifact.

Work is cut into runs of consecutive frames of one video (``geometric.frame_runs``) and
spread over worker processes; each worker reads its own flow chunks and ground truth, so
only finished uint8 label maps travel back. A video is published (atomically, by
``zarrstore.write_video``) once all its runs are back, and recorded with its quality counts
in the manifest, so a killed run resumes at the first unpublished video and the summary is
computed from the manifest over every video, resumed or not.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import zarr

from stages import zarrstore
from stages.artifacts import Artifact, ArtifactStore, file_sha256
from stages.datasets import Dataset, Video, open_dataset
from stages.datasets.imageio import read_gray
from stages.errors import UserError
from stages.hardware import DEVICE, die_with_parent, resolve_device, usable_cores, worker_count
from stages.masks.geometric import GeometricParams, MotionOf, frame_runs, run_masks
from stages.masks.importer import dataset_mask_paths, fingerprint, import_paths, read_frame_masks
from stages.masks.params import (
    BUILTIN_SEGMENTER,
    NO_SEGMENTER,
    InstanceParams,
    MotionParams,
    geometric_instances,
    segmenter_instances,
)
from stages.masks.quality import MaskCounts, frame_counts
from stages.progress import log, track

STAGE = "masks"
FLOW_STAGE = "flow"
FORMAT_VERSION = 1
GEOMETRIC, LEARNED, IMPORT, DATASET = "geometric", "learned", "import", "dataset"
#: methods that compute masks from a flow artifact
FROM_FLOW = (GEOMETRIC, LEARNED)
#: a computed video with fewer masks per frame, or masks over more of the frame, is flagged
MIN_MASKS_PER_FRAME = 0.05
MAX_COVERAGE = 0.25


@dataclass(frozen=True)
class MasksConfig:
    """What ``diod masks`` computes. Source: the flow artifact ``flow`` (None = newest
    complete), or ``import_dir``, or the dataset's own masks (``dataset_masks``).
    ``instances.min_area`` and ``instances.max_masks`` apply to imported masks too."""

    dataset: str
    root: str | None = None
    flow: str | None = None
    import_dir: str | None = None
    dataset_masks: bool = False
    #: moving pixels by a learned segmenter: ``builtin``, a model file or a ``segmenter``
    #: artifact id (prefix); ``none``: by the geometric rule (``motion``'s thresholds).
    #: Not used by imported masks.
    segmenter: str = BUILTIN_SEGMENTER
    splits: tuple[str, ...] = ()
    motion: MotionParams = field(default_factory=MotionParams)
    instances: InstanceParams = field(default_factory=InstanceParams)
    workers: int | None = None  # None: one per core (hardware.worker_count)
    #: where the segmenter's network runs (``hardware.DEVICE``); not part of the artifact
    device: str = DEVICE.default
    run_length: int = 16
    force: bool = False

    @property
    def method(self) -> str:
        if self.import_dir is not None and self.dataset_masks:
            raise UserError("--import and --dataset-masks: give one source of masks, not both")
        if self.flow is not None and (self.import_dir is not None or self.dataset_masks):
            raise UserError(
                "--flow is for masks computed from flow: not with --import/--dataset-masks"
            )
        if self.import_dir is not None:
            return IMPORT
        if self.dataset_masks:
            return DATASET
        return GEOMETRIC if self.segmenter == NO_SEGMENTER else LEARNED

    @property
    def dtype(self) -> str:
        return "uint8" if self.instances.max_masks <= 255 else "uint16"


@dataclass(frozen=True)
class Job:
    """One run of frames of one video, everything a worker process needs to compute it."""

    method: str
    dataset: str
    root: str
    split: str
    video: str
    start: int
    stop: int
    height: int
    width: int
    dtype: str
    params: GeometricParams
    flow_path: str | None = None
    mask_paths: tuple[str, ...] = ()
    frame_size: tuple[int, int] = (0, 0)
    segmenter_path: str | None = None
    device: str = "cpu"


@dataclass
class VideoPlan:
    """One video to compute: where its input is, its output size and frame runs."""

    video: Video
    runs: list[tuple[int, int]]
    height: int
    width: int
    source_size: tuple[int, int]
    flow_path: str | None = None
    mask_paths: tuple[Path, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.video.split}/{self.video.name}"


# -- worker side -----------------------------------------------------------------------------
@lru_cache(maxsize=2)
def _dataset(name: str, root: str) -> Dataset:
    return open_dataset(name, root)


@lru_cache(maxsize=64)
def _moving_ids(name: str, root: str, split: str, video: str) -> frozenset[int] | None:
    ds = _dataset(name, root)
    ids = ds.moving_ids(ds.video(split, video))
    return None if ids is None else frozenset(ids)


def _to_float32(half: np.ndarray) -> np.ndarray:
    """float16 -> float32, bit for bit as numpy's ``astype``, but through torch's vectorised
    conversion: numpy converts half floats one by one (1.9 ms against 0.6 ms for a
    375x1242 flow pair on one core, about 9 % of the masks' instructions)."""
    return torch.from_numpy(half).float().numpy()


class ZarrFlowPairs:
    """A video's flow group as ``geometric.FlowPairs``.

    The pairs a run needs (``frames``: its frame range; one pair more on each side for the
    halo) are read in one Zarr call per direction: a call costs milliseconds of event-loop
    overhead, more than decoding a chunk. Pairs are kept float16 and converted on access.
    """

    def __init__(
        self,
        path: str,
        frames: tuple[int, int] | None = None,
        images: dict[int, np.ndarray] | None = None,
    ):
        """``images``: frame index -> 8-bit gray at the flow's size (``gray_frames``)."""
        self._images = images or {}
        group = zarr.open_group(store=path, mode="r", zarr_format=3)
        forward, backward = group["forward"], group.get("backward")
        self.num_frames = forward.shape[0] + 1
        self.has_backward = backward is not None
        start, stop = frames or (0, self.num_frames)
        self._first = max(start - 1, 0)
        last = min(stop + 1, forward.shape[0])
        self._forward = forward[self._first : last]
        self._backward = backward[self._first : last] if backward is not None else None

        self.forward = lru_cache(maxsize=3)(self._forward_at)
        self.backward = lru_cache(maxsize=3)(self._backward_at)

    def _forward_at(self, t: int) -> np.ndarray:
        return _to_float32(self._forward[t - self._first])

    def _backward_at(self, t: int) -> np.ndarray | None:
        if self._backward is None:
            return None
        return _to_float32(self._backward[t - self._first])

    def image(self, t: int) -> np.ndarray | None:
        return self._images.get(t)


def gray_frames(
    ds: Dataset, video: Video, first: int, stop: int, size: tuple[int, int]
) -> dict[int, np.ndarray]:
    """Frames [first, stop) of a video as 8-bit gray (H, W) = ``size`` (the flow's, which
    may differ from the frames'); a video file is decoded once, up to ``stop``."""
    height, width = size
    if video.video_file is not None:
        wanted = ((t, rgb) for t, rgb in enumerate(ds.iter_frames(video)) if t >= first)
        frames = dict(itertools.takewhile(lambda item: item[0] < stop, wanted))
        grays = {t: cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) for t, rgb in frames.items()}
    else:
        grays = {t: read_gray(video.rgb[t]) for t in range(first, stop)}
    out = {}
    for t, gray in grays.items():
        if gray.shape != (height, width):
            gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)
        out[t] = gray
    return out


def _worker_init(parent: int) -> None:
    die_with_parent(parent)  # a killed `diod masks` leaves no worker behind
    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would oversubscribe
    # and torch's (the segmenter's network): this module imported torch before this runs, so
    # OMP_NUM_THREADS set here would come too late; 2 workers x 2 threads ran 2-3x slower
    torch.set_num_threads(1)


@lru_cache(maxsize=2)
def _learned_motion(path: str, device: str) -> MotionOf:
    from stages.masks.learned.inference import LearnedMotion
    from stages.masks.learned.modelfile import load_segmenter

    segmenter = load_segmenter(path)
    return LearnedMotion(segmenter.model, segmenter.motion, segmenter.threshold, device)


def run_job(job: Job) -> tuple[np.ndarray, MaskCounts | None]:
    """Masks (stop - start, H, W) of one run and their quality counts (None without GT)."""
    ds = _dataset(job.dataset, job.root)
    video = ds.video(job.split, job.video)
    if job.method in FROM_FLOW:
        images = None
        if job.params.motion.texture_frac > 0 or job.method == LEARNED:
            first, stop = max(job.start - 1, 0), min(job.stop + 1, len(video))
            images = gray_frames(ds, video, first, stop, (job.height, job.width))
        flows = ZarrFlowPairs(job.flow_path, (job.start, job.stop), images)
        motion_of = (
            _learned_motion(job.segmenter_path, job.device) if job.method == LEARNED else None
        )
        labels = run_masks(flows, job.start, job.stop, job.params, job.height, job.width, motion_of)
    else:
        im = job.params.instances
        labels = np.stack(
            [
                read_frame_masks(Path(p), job.frame_size, im.min_area, im.max_masks)
                for p in job.mask_paths
            ]
        )
    labels = labels.astype(job.dtype)
    if not video.instances:
        return labels, None
    moving = _moving_ids(job.dataset, job.root, job.split, job.video)
    counts = MaskCounts()
    for offset, t in enumerate(range(job.start, job.stop)):
        counts = counts + frame_counts(labels[offset], ds.instances(video, t), moving)
    return labels, counts


def _execute(jobs: Sequence[Job], workers: int) -> Iterator[tuple[Job, tuple]]:
    """Results in job order; at most 2 x workers runs in flight, so memory stays bounded
    whatever the dataset size."""
    if workers <= 1:  # one process's worth of work: no pool to spawn
        for job in jobs:
            yield job, run_job(job)
        return
    context = multiprocessing.get_context("spawn")  # zarr's event-loop thread must not be forked
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_init, initargs=(os.getpid(),)
    )
    pending: deque[tuple[Job, Future]] = deque()
    queue = iter(jobs)
    try:
        for job in queue:
            pending.append((job, pool.submit(run_job, job)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            job, future = pending.popleft()
            result = future.result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(run_job, nxt)))
            yield job, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- planning (main process) -----------------------------------------------------------------
def _flow_plans(
    config: MasksConfig, flow: Artifact, ds: Dataset, splits: list[str]
) -> list[VideoPlan]:
    """Check the flow artifact against the dataset video by video, and plan the runs."""
    plans = []
    flow_root = flow.params.get("root", "?")
    for split in splits:
        available = set(zarrstore.video_names(flow, zarrstore.FLOW_STORE, split))
        if not available:
            raise UserError(
                f"--flow {flow.id}: the flow artifact has no split '{split}' "
                f"(it covers: {', '.join(_store_splits(flow)) or 'nothing'})"
            )
        for video in ds.videos(split):
            if video.name not in available:
                raise UserError(
                    f"--flow {flow.id}: no flow for video '{split}/{video.name}' of the "
                    f"{ds.name} dataset at {ds.root}; the flow artifact was computed on "
                    f"{flow_root}: pass a flow artifact of this dataset"
                )
            group = zarrstore.open_video(flow, zarrstore.FLOW_STORE, split, video.name)
            pairs, _two, height, width = group["forward"].shape
            names = group.attrs.get("frame_names")
            frame_size = ds.frame_size(video)
            source = (group.attrs.get("source_height"), group.attrs.get("source_width"))
            if source[0] is None:
                source = frame_size
            found = None
            if pairs != len(video) - 1:
                found = f"{len(video)} frames, the flow {pairs + 1}"
            elif names is not None and tuple(names) != video.frames:
                found = "frame names the flow does not have"
            elif tuple(source) != tuple(frame_size):
                found = f"{frame_size[0]}x{frame_size[1]} frames, the flow {source[0]}x{source[1]}"
            if found:
                raise UserError(
                    f"--flow {flow.id}: video '{split}/{video.name}' of the {ds.name} dataset at "
                    f"{ds.root} has {found} (flow computed on {flow_root}): pass a flow artifact "
                    "of this dataset"
                )
            plans.append(
                VideoPlan(
                    video,
                    frame_runs(len(video), config.run_length),
                    height,
                    width,
                    (int(source[0]), int(source[1])),
                    flow_path=str(
                        zarrstore.store_path(flow, zarrstore.FLOW_STORE) / split / video.name
                    ),
                )
            )
    return plans


def _store_splits(artifact: Artifact) -> list[str]:
    path = zarrstore.store_path(artifact, zarrstore.FLOW_STORE)
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def _import_plans(config: MasksConfig, ds: Dataset, splits: list[str]) -> list[VideoPlan]:
    """Every mask file located (an error names the first missing one) before any work."""
    plans = []
    for split in splits:
        for video in ds.videos(split):
            if config.method == IMPORT:
                found = import_paths(Path(config.import_dir), video)
            else:
                found = dataset_mask_paths(ds, video)
            h, w = ds.frame_size(video)
            runs = frame_runs(len(video), config.run_length)
            plans.append(VideoPlan(video, runs, h, w, (h, w), mask_paths=tuple(found)))
    return plans


def _default_import_splits(config: MasksConfig, ds: Dataset) -> list[str]:
    if config.method == IMPORT:
        directory = Path(config.import_dir)
        if not directory.is_dir():
            raise UserError(f"--import {directory}: not a directory")
        splits = [s for s in ds.splits() if (directory / s).is_dir()]
        if not splits:
            raise UserError(
                f"--import {directory}: no split folder of the dataset in it "
                f"(expected DIR/<split>/<video>/<frame>.png with split in {', '.join(ds.splits())})"
            )
        return splits
    splits = [s for s in ds.splits() if all(v.motion for v in ds.videos(s))]
    if not splits:
        raise UserError(
            f"--dataset-masks: the {ds.name} dataset at {ds.root} has no split whose videos all "
            "have precomputed motion masks"
        )
    return splits


def compute_masks(store: ArtifactStore, config: MasksConfig) -> Artifact:
    """Write (or reuse, or resume) the masks artifact ``config`` determines."""
    method = config.method
    upstream: dict[str, Artifact] = {}
    params: dict[str, Any] = {"method": method}
    if method in FROM_FLOW:
        flow = store.resolve(config.dataset, FLOW_STAGE, config.flow)
        root = config.root or flow.params.get("root")
        if root is None:
            raise UserError(
                f"--flow {flow.id}: the flow artifact records no dataset root: pass --root"
            )
        ds = open_dataset(config.dataset, root)
        splits = list(config.splits or flow.params.get("splits") or _store_splits(flow))
        plans = _flow_plans(config, flow, ds, splits)
        upstream = {FLOW_STAGE: flow}
        motion = config.motion
        if method == LEARNED:
            segmenter_path, params["segmenter"] = resolve_segmenter(store, config.segmenter)
            motion = _segmenter_motion(segmenter_path)
            device = str(resolve_device(config.device))
            config = replace(
                config,
                segmenter=str(segmenter_path),
                motion=motion,
                instances=segmenter_instances(config.instances),
                device=device,
            )
        else:
            config = replace(config, instances=geometric_instances(config.instances))
        params.update(motion=asdict(motion), instances=asdict(config.instances))
    else:
        if config.root is None:
            option = "--import" if method == IMPORT else "--dataset-masks"
            raise UserError(f"--root is required with {option} (the dataset the masks belong to)")
        ds = open_dataset(config.dataset, config.root)
        splits = list(config.splits or _default_import_splits(config, ds))
        plans = _import_plans(config, ds, splits)
        params.update(
            fingerprint=fingerprint(p for plan in plans for p in plan.mask_paths),
            min_area=config.instances.min_area,
            max_masks=config.instances.max_masks,
        )
        if method == IMPORT:
            params["import_dir"] = str(Path(config.import_dir).resolve())
    params.update(root=str(Path(ds.root).resolve()), splits=splits)

    with store.open(
        config.dataset, STAGE, params, upstream, format_version=FORMAT_VERSION, force=config.force
    ) as writer:
        if writer.was_complete:
            log.info("masks artifact %s is complete: reusing it (--force recomputes)", writer.id)
            return writer.artifact()
        done = writer.manifest.get("progress", {})
        todo = [
            p
            for p in plans
            if not (
                p.key in done
                and zarrstore.has_video(writer, zarrstore.MASKS_STORE, p.video.split, p.video.name)
            )
        ]
        if writer.resumed:
            log.info(
                "resuming masks artifact %s: %d of %d videos left", writer.id, len(todo), len(plans)
            )
        _write_videos(writer, todo, params, config)
        return writer.complete(summarise(writer.manifest["progress"], plans))


def resolve_segmenter(
    store: ArtifactStore, ref: str, option: str = "--segmenter"
) -> tuple[Path, str]:
    """(model file, its identity) of ``--segmenter`` (or ``option``): ``builtin`` (the packaged model), a
    file path (identity: its content's hash) or the id (prefix) of a complete
    ``segmenter`` artifact of any dataset of the workspace (identity: the artifact id)."""
    from stages.masks.learned.modelfile import BUILTIN_FILE
    from stages.masks.learned.stage import MODEL_FILE
    from stages.masks.learned.stage import STAGE as SEGMENTER_STAGE

    if ref == BUILTIN_SEGMENTER:
        if not BUILTIN_FILE.is_file():
            raise UserError(
                f"{option} {BUILTIN_SEGMENTER}: this installation has no built-in model "
                f"({BUILTIN_FILE}; `make segmenter` trains it; --segmenter {NO_SEGMENTER}: the "
                "geometric rule)"
            )
        path = BUILTIN_FILE
    else:
        path = Path(ref).expanduser()
    if path.is_file():
        return path.resolve(), "sha256:" + file_sha256(path)[:16]
    found = [a for a in store.list(None, SEGMENTER_STAGE) if a.is_complete and a.id.startswith(ref)]
    if not found:
        raise UserError(
            f"{option} {ref}: no such model file, nor a complete segmenter artifact with "
            f"this id in {store.workspace} (train one with diod segmenter)"
        )
    if len(found) > 1:
        raise UserError(f"{option} {ref}: ambiguous prefix ({', '.join(map(str, found))})")
    return found[0].path / MODEL_FILE, found[0].id


def _segmenter_motion(path: Path) -> MotionParams:
    """The camera-fit settings a segmenter was trained with (its features need the same);
    loading it here also turns a bad file into one error line before any work."""
    from stages.masks.learned.modelfile import load_segmenter

    return load_segmenter(path).motion


def _jobs(plan: VideoPlan, config: MasksConfig, root: str) -> list[Job]:
    method = config.method if plan.flow_path else IMPORT
    return [
        Job(
            method=method,
            dataset=config.dataset,
            root=root,
            split=plan.video.split,
            video=plan.video.name,
            start=start,
            stop=stop,
            height=plan.height,
            width=plan.width,
            dtype=config.dtype,
            params=GeometricParams(config.motion, config.instances),
            flow_path=plan.flow_path,
            mask_paths=tuple(str(p) for p in plan.mask_paths[start:stop]),
            frame_size=plan.source_size,
            segmenter_path=config.segmenter if method == LEARNED else None,
            device=config.device,
        )
        for start, stop in plan.runs
    ]


def _write_videos(
    writer, plans: list[VideoPlan], params: dict[str, Any], config: MasksConfig
) -> None:
    """Run every job; publish each video as soon as all its runs are back."""
    jobs = [job for plan in plans for job in _jobs(plan, config, params["root"])]
    by_key = {plan.key: plan for plan in plans}
    parts: dict[str, list[tuple[np.ndarray, MaskCounts | None]]] = {}
    results = _execute(jobs, worker_count(config.workers, usable_cores(), len(jobs)))
    for job, result in track(results, "motion masks", total=len(jobs)):
        key = f"{job.split}/{job.video}"
        parts.setdefault(key, []).append(result)
        plan = by_key[key]
        if len(parts[key]) < len(plan.runs):
            continue
        done = parts.pop(key)
        masks = np.concatenate([labels for labels, _ in done])
        counts = None
        if all(c is not None for _, c in done):
            counts = sum((c for _, c in done), MaskCounts())
        _publish(writer, plan, masks, counts, params)


def _publish(writer, plan: VideoPlan, masks: np.ndarray, counts: MaskCounts | None, params) -> None:
    video = plan.video
    attrs = {
        **params,
        "height": plan.height,
        "width": plan.width,
        "source_height": plan.source_size[0],
        "source_width": plan.source_size[1],
        "frame_names": list(video.frames),
        "split": video.split,
    }
    with zarrstore.write_video(
        writer, zarrstore.MASKS_STORE, video.split, video.name, attrs
    ) as group:
        array = zarrstore.frame_array(group, "masks", masks.shape, masks.dtype)
        array[:] = masks
    per_frame = masks.reshape(len(masks), -1).max(axis=1)
    record = {
        "frames": len(masks),
        "masks": int(per_frame.sum()),
        "counts": None if counts is None else counts.to_dict(),
    }
    if params["method"] in FROM_FLOW:
        warning = implausible(masks, params["method"])
        if warning is not None:
            log.warning("%s: %s", plan.key, warning)
            record["warning"] = warning
    writer.record(plan.key, record)


def implausible(masks: np.ndarray, method: str = GEOMETRIC) -> str | None:
    """Why a video's computed masks look wrong, naming the options to look at, or None.

    Almost no masks: its movers are slower than the flow's noise, or there are none.
    Masks over a large share of the frame: the camera model leaves the static scene as
    motion (a homography under a camera driving forward through a 3-D scene), or footage
    far from what a learned segmenter was trained on.
    """
    per_frame = float(masks.reshape(len(masks), -1).max(axis=1).mean())
    coverage = float((masks > 0).mean())
    learned = method == LEARNED
    if coverage > MAX_COVERAGE:
        look = (
            f"footage unlike the segmenter's training worlds; look at --segmenter "
            f"({NO_SEGMENTER}: the geometric rule)"
            if learned
            else "the camera model leaves the static scene as motion; look at --camera-model "
            "(parallax for a camera driving forward) and --noise-k"
        )
        return f"masks cover {coverage:.0%} of the frame: {look}"
    if per_frame < MIN_MASKS_PER_FRAME:
        look = (
            "look at --segmenter (or a better flow)"
            if learned
            else "look at --noise-k and --min-residual (or a better flow)"
        )
        return (
            f"almost no masks ({per_frame:.2f} per frame): no movers, or movers slower than the "
            f"flow's noise; {look}"
        )
    return None


def summarise(progress: dict[str, Any], plans: list[VideoPlan]) -> dict[str, Any]:
    """Totals and mask quality per split, from the manifest's per-video records."""
    summary: dict[str, Any] = {"videos": len(plans), "quality": {}}
    frames = masks = 0
    for split in dict.fromkeys(p.video.split for p in plans):
        records = [progress[p.key] for p in plans if p.video.split == split]
        frames += sum(r["frames"] for r in records)
        masks += sum(r["masks"] for r in records)
        if records and all(r["counts"] is not None for r in records):
            total = sum((MaskCounts.from_dict(r["counts"]) for r in records), MaskCounts())
            summary["quality"][split] = total.scores()
    summary.update(frames=frames, masks=masks, masks_per_frame=round(masks / max(frames, 1), 3))
    warnings = {p.key: progress[p.key]["warning"] for p in plans if "warning" in progress[p.key]}
    if warnings:
        summary["warnings"] = warnings
    return summary
