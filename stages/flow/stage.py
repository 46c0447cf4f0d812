"""`diod flow`: optical flow for every video of a dataset into one versioned Zarr artifact.

Dataflow, all three parts running at once:
1. DataLoader workers decode and resize frames (``loader.py``), each frame once;
2. the main process forms consecutive pairs, batches them (across videos of one resolution)
   and runs the backend under ``torch.inference_mode`` (AMP on a GPU);
3. one writer thread stores the float16 flow into each video's staging group (Blosc
   compression releases the GIL) and publishes the group, atomically, once its last pair is
   stored.

Frames are numpy arrays in the main process, not torch tensors: on a busy 2-core machine
torch's CPU ``cat``/``stack`` of a batch of uint8 frames wakes its OpenMP pool and cost
hundreds of times ``np.concatenate`` (docs/flow.md; it dominated OpenCV backends' time).

Work is divided by video: a killed run redoes only videos not yet published, and ``--shard
i/n`` processes fill disjoint videos of the same artifact; whichever finds every video
present marks it complete (or ``finalize_flow``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stages.artifacts import Artifact, ArtifactStore, ArtifactWriter, artifact_id, read_json
from stages.datasets import Dataset, Video, open_dataset
from stages.errors import UserError
from stages.flow.backends import GROUND_TRUTH, BackendSpec, FlowBackend, resolve_backend
from stages.flow.epe import flow_epe_report
from stages.flow.groundtruth import copy_ground_truth
from stages.flow.loader import FrameChunk, VideoFrames, frame_loader
from stages.progress import log, track
from stages.zarrstore import FLOW_STORE, frame_array, has_video, write_video

STAGE = "flow"
FORMAT_VERSION = 1
MAX_PENDING_WRITES = 8  # batches in flight to the writer thread before the model waits


@dataclass(frozen=True)
class FlowConfig:
    """What `diod flow` was asked to do. ``ckpt=None`` means random weights (tests, benches)."""

    dataset: str
    root: Path | str
    splits: tuple[str, ...] = ()  # () = every split the dataset has
    model: str = "raft"
    ckpt: str | None = "things"
    iters: int | None = None  # None = the model's default
    size: tuple[int, int] | None = None  # (H, W) to resize frames to; None = native
    batch_size: int = 8  # pairs per model call (twice that with backward flow)
    workers: int | None = None  # DataLoader workers; None = cores - 1
    device: str = "auto"
    precision: str = "auto"
    shard: tuple[int, int] | None = None  # (i, n); None = from RANK/WORLD_SIZE or SLURM
    backward: bool = True
    skip_bad: bool = False
    force: bool = False


@dataclass(frozen=True)
class Job:
    split: str
    video: Video

    @property
    def key(self) -> str:
        return f"{self.split}/{self.video.name}"


# -- planning -------------------------------------------------------------------------------
def shard_from_env(environ: dict[str, str] | None = None) -> tuple[int, int]:
    """(i, n) from torchrun's RANK/WORLD_SIZE or SLURM's SLURM_PROCID/SLURM_NTASKS, else (0, 1)."""
    env = os.environ if environ is None else environ
    for rank, size in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if rank in env and size in env:
            try:
                return check_shard((int(env[rank]), int(env[size])), f"{rank}/{size}")
            except ValueError:
                raise UserError(
                    f"{rank}={env[rank]} {size}={env[size]}: expected integers"
                ) from None
    return 0, 1


def check_shard(shard: tuple[int, int], source: str = "--shard") -> tuple[int, int]:
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise UserError(f"{source} {index}/{count}: expected i/n with 0 <= i < n")
    return index, count


def _splits(dataset: Dataset, requested: Iterable[str]) -> list[str]:
    requested = list(dict.fromkeys(requested))
    if not requested:
        found = dataset.splits()
        if not found:
            raise UserError(f"--root {dataset.root}: no videos found in the {dataset.name} layout")
        return sorted(found)
    for split in requested:
        dataset.videos(split)  # raises, naming the splits that exist
    return sorted(requested)


@dataclass(frozen=True)
class Plan:
    """A resolved request: the dataset, every video it covers, the backend and the params."""

    dataset: Dataset
    jobs: list[Job]
    spec: BackendSpec
    params: dict[str, Any]
    shard: tuple[int, int]


def plan_flow(config: FlowConfig) -> Plan:
    """Validate the request and fix the artifact's parameters, without building a model."""
    if config.batch_size < 1:
        raise UserError(f"--batch-size {config.batch_size}: expected at least 1")
    if config.size is not None and min(config.size) < 1:
        raise UserError(f"--size {config.size[0]}x{config.size[1]}: expected positive HxW")
    shard = check_shard(config.shard) if config.shard else shard_from_env()
    dataset = open_dataset(config.dataset, config.root)
    splits = _splits(dataset, config.splits)
    jobs = [Job(split, video) for split in splits for video in dataset.videos(split)]
    spec = resolve_backend(config.model, config.ckpt, config.device, config.precision, config.iters)
    params = {
        "root": str(dataset.root.resolve()),
        "splits": splits,
        **spec.identity(),
        "size": list(config.size) if config.size else None,
        "backward": config.backward,
    }
    return Plan(dataset, jobs, spec, params, shard)


# -- the stage ------------------------------------------------------------------------------
def compute_flow(store: ArtifactStore, config: FlowConfig) -> Artifact:
    """Compute this process's share of the flow artifact; complete it if nothing is missing.

    Returns the artifact, ``running`` when other shards still have videos to publish.
    """
    plan = plan_flow(config)
    index, count = plan.shard
    if config.force and count > 1:
        raise UserError(
            f"--force with --shard {index}/{count}: every shard would erase the others' videos; "
            "run once without sharding, or delete the artifact directory first"
        )
    with store.open(
        config.dataset,
        STAGE,
        plan.params,
        format_version=FORMAT_VERSION,
        force=config.force,
        shard=plan.shard,
    ) as writer:
        if writer.was_complete:
            log.info("flow artifact %s is complete: reusing it (--force recomputes)", writer.id)
            return writer.artifact()
        todo = [
            job
            for k, job in enumerate(plan.jobs)
            if k % count == index and not has_video(writer, FLOW_STORE, job.split, job.video.name)
        ]
        if writer.resumed:
            log.info(
                "resuming flow artifact %s: %d videos left in this shard", writer.id, len(todo)
            )
        if todo and plan.spec.model == GROUND_TRUTH:
            copy_ground_truth(
                writer,
                plan.dataset,
                todo,
                partial(video_attrs, plan.spec),
                config.size,
                config.backward,
            )
        elif todo:
            _FlowRun(writer, plan, config, plan.spec.build()).run(todo)
        return _complete_if_all_present(writer, plan)


def finalize_flow(store: ArtifactStore, config: FlowConfig) -> Artifact:
    """Mark a sharded artifact complete; a clear error if some video is still missing."""
    plan = plan_flow(config)
    art_id = artifact_id(config.dataset, STAGE, plan.params, {}, FORMAT_VERSION)
    path = store.path_for(config.dataset, STAGE, art_id)
    if not (path / "manifest.json").exists():
        raise UserError(
            f"--finalize: no flow artifact with these options in {store.workspace} ({path}): "
            "run the shards first, with the same options"
        )
    art = Artifact.load(path)
    if art.is_complete:
        return art
    missing = _missing(path, read_json(path / "manifest.json"), plan.jobs)
    if missing:
        raise UserError(
            f"--finalize: flow artifact {art_id} lacks {len(missing)} of {len(plan.jobs)} videos "
            f"(first: {missing[0]}): run the unfinished shards again"
        )
    with store.open(config.dataset, STAGE, plan.params, format_version=FORMAT_VERSION) as writer:
        return writer.artifact() if writer.was_complete else _complete_if_all_present(writer, plan)


def _missing(path: Path, manifest: dict[str, Any], jobs: list[Job]) -> list[str]:
    """Videos neither published nor recorded as skipped (``--skip-bad``)."""
    progress = manifest.get("progress", {})
    return [
        job.key
        for job in jobs
        if not (path / FLOW_STORE / job.split / job.video.name / "zarr.json").exists()
        and not progress.get(job.key, {}).get("skipped")
    ]


def _complete_if_all_present(writer: ArtifactWriter, plan: Plan) -> Artifact:
    manifest = writer.manifest
    missing = _missing(writer.path, manifest, plan.jobs)
    if missing:
        log.info(
            "flow artifact %s: %d of %d videos still missing (other shards); it completes when "
            "the last shard finishes or with --finalize",
            writer.id,
            len(missing),
            len(plan.jobs),
        )
        return writer.artifact()
    progress = manifest.get("progress", {})
    skipped = sorted(k for k, v in progress.items() if v.get("skipped"))
    done = [job for job in plan.jobs if job.key not in skipped]
    summary: dict[str, Any] = {
        "videos": len(done),
        "pairs": sum(max(len(job.video) - 1, 0) for job in done),
        "skipped": skipped,
    }
    epe = flow_epe_report(writer.artifact(), plan.dataset)
    if epe is not None:
        summary["epe"] = epe
    return writer.complete(summary)


# -- one process's work ---------------------------------------------------------------------
def video_attrs(
    spec: BackendSpec, job: Job, size: tuple[int, int], source_size: tuple[int, int]
) -> dict[str, Any]:
    """A video group's attributes: how its flow was made, its size (HxW) and the frames'."""
    (height, width), (source_h, source_w) = size, source_size
    return {
        "model": spec.model,
        "checkpoint": spec.checkpoint,
        "checkpoint_sha256": spec.checkpoint_sha256,
        "iters": spec.iters,
        "precision": spec.precision,
        "settings": spec.settings,
        "height": height,
        "width": width,
        "source_height": source_h,
        "source_width": source_w,
        "pixel_scale": [source_w / width, source_h / height],
        "channel_order": "dx,dy",
        "frame_names": list(job.video.frames),
        "split": job.split,
        "video": job.video.name,
    }


@dataclass
class _VideoOutput:
    """One video being written: its staging group, and how many of its pairs went to the writer."""

    index: int  # of its job in this run
    job: Job
    pairs: int
    context: contextlib.AbstractContextManager
    forward: Any
    backward: Any | None
    started: float = field(default_factory=time.perf_counter)
    submitted: int = 0
    received_all: bool = False
    previous: np.ndarray | None = None  # last frame of the previous chunk

    @property
    def done(self) -> bool:
        return self.received_all and self.submitted == self.pairs

    def pairs_of(self, chunk: FrameChunk) -> tuple[int, np.ndarray] | None:
        """(index of its first pair, frames) for the pairs this chunk completes."""
        frames, first = chunk.frames.numpy(), chunk.start
        if self.previous is not None:
            frames, first = np.concatenate([self.previous[None], frames]), first - 1
        self.previous = frames[-1]
        return (first, frames) if len(frames) > 1 else None

    def store(self, first: int, forward: np.ndarray, backward: np.ndarray | None) -> None:
        self.forward[first : first + len(forward)] = forward
        if backward is not None:
            self.backward[first : first + len(backward)] = backward


@dataclass
class _Segment:
    """Consecutive frames of one video: ``len(frames) - 1`` pairs starting at pair ``first``."""

    output: _VideoOutput
    first: int
    frames: np.ndarray  # (k + 1, H, W, 3) uint8

    @property
    def pairs(self) -> int:
        return len(self.frames) - 1


class _PairQueue:
    """Pairs waiting for a model call, all of one resolution, in arrival order."""

    def __init__(self) -> None:
        self.segments: deque[_Segment] = deque()
        self.pairs = 0

    def add(self, segment: _Segment) -> None:
        self.segments.append(segment)
        self.pairs += segment.pairs

    def take(self, n: int) -> list[_Segment]:
        out: list[_Segment] = []
        while n > 0 and self.segments:
            seg = self.segments.popleft()
            if seg.pairs > n:  # split: the rest stays first in line
                head = _Segment(seg.output, seg.first, seg.frames[: n + 1])
                self.segments.appendleft(_Segment(seg.output, seg.first + n, seg.frames[n:]))
                seg = head
            out.append(seg)
            n -= seg.pairs
            self.pairs -= seg.pairs
        return out


class _Writer:
    """One thread that stores and publishes, in submission order, with bounded backlog."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flow-writer")
        self.pending: deque[Future] = deque()

    def submit(self, fn, *args) -> None:
        self.pending.append(self.pool.submit(fn, *args))
        while len(self.pending) > MAX_PENDING_WRITES or (self.pending and self.pending[0].done()):
            self.pending.popleft().result()  # re-raises a failed write here

    def drain(self) -> None:
        while self.pending:
            self.pending.popleft().result()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _to_host_float16(flows: torch.Tensor) -> np.ndarray:
    """On a GPU, halve before the copy (half the bytes over PCIe); on the CPU, numpy's cast."""
    if flows.device.type == "cpu":
        return flows.numpy().astype(np.float16)
    return flows.to(torch.float16).cpu().numpy()


def _per_frame(chunks: Iterable[FrameChunk]) -> Iterator[FrameChunk | None]:
    """Each chunk followed by one ``None`` per further frame, so a progress bar counts frames."""
    for chunk in chunks:
        yield chunk
        for _ in range(len(chunk) - 1):
            yield None


class _FlowRun:
    def __init__(
        self, writer: ArtifactWriter, plan: Plan, config: FlowConfig, backend: FlowBackend
    ):
        self.writer = writer
        self.plan = plan
        self.config = config
        self.backend = backend
        self.outputs: dict[int, _VideoOutput] = {}
        self.queues: dict[tuple[int, int], _PairQueue] = {}
        self.jobs: list[Job] = []
        self.writes = _Writer()

    def run(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        frames = VideoFrames(
            self.plan.dataset, [j.video for j in jobs], self.config.size, self.config.batch_size
        )
        loader = frame_loader(frames, self.config.workers, self.backend.device.type == "cuda")
        total = sum(len(j.video) for j in jobs)
        try:
            bar = f"flow {self.backend.name}, {len(jobs)} videos: frames"
            for chunk in track(_per_frame(loader), bar, total=total):
                if chunk is not None:
                    self._receive(chunk)
            for queue in self.queues.values():
                while queue.pairs:
                    self._infer(queue.take(self.config.batch_size))
            self.writes.drain()
        except BaseException as exc:
            self.writes.shutdown()  # nothing may still write into a staging group we remove
            for output in self.outputs.values():
                output.context.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self.writes.shutdown()

    def _receive(self, chunk: FrameChunk) -> None:
        if chunk.error is not None:
            self._bad_video(chunk.job, chunk.error)
            return
        output = self.outputs.get(chunk.job) or self._open(chunk)
        taken = output.pairs_of(chunk)
        if taken is not None:
            first, frames = taken
            queue = self.queues.setdefault(tuple(frames.shape[1:3]), _PairQueue())
            queue.add(_Segment(output, first, frames))
            while queue.pairs >= self.config.batch_size:
                self._infer(queue.take(self.config.batch_size))
        if chunk.last:
            output.received_all = True
            if output.done:  # no pair at all (a one-frame video) or all already submitted
                self._close(chunk.job)

    def _bad_video(self, index: int, message: str) -> None:
        output = self.outputs.pop(index, None)
        if output is not None:  # drop its waiting pairs, then its staging group
            for queue in self.queues.values():
                queue.segments = deque(s for s in queue.segments if s.output is not output)
                queue.pairs = sum(s.pairs for s in queue.segments)
            self.writes.drain()
            error = UserError(message)
            output.context.__exit__(UserError, error, None)
        if not self.config.skip_bad:
            raise UserError(f"{message} (rerun with --skip-bad to leave this video out)")
        log.warning("skipping %s: %s", self.jobs[index].key, message)
        self.writer.record(self.jobs[index].key, {"skipped": True, "error": message})

    def _open(self, chunk: FrameChunk) -> _VideoOutput:
        job = self.jobs[chunk.job]
        height, width = chunk.frames.shape[1:3]
        attrs = video_attrs(self.plan.spec, job, (height, width), chunk.source_size)
        pairs = max(len(job.video) - 1, 0)
        context = write_video(self.writer, FLOW_STORE, job.split, job.video.name, attrs)
        group = context.__enter__()
        shape = (pairs, 2, height, width)
        try:
            forward = frame_array(group, "forward", shape, "float16", {"pair": "t -> t+1"})
            backward = (
                frame_array(group, "backward", shape, "float16", {"pair": "t+1 -> t"})
                if self.config.backward
                else None
            )
        except BaseException as exc:  # not yet in self.outputs: clean up its staging here
            context.__exit__(type(exc), exc, exc.__traceback__)
            raise
        output = _VideoOutput(chunk.job, job, pairs, context, forward, backward)
        self.outputs[chunk.job] = output
        return output

    def _infer(self, segments: list[_Segment]) -> None:
        a = np.concatenate([s.frames[:-1] for s in segments])
        b = np.concatenate([s.frames[1:] for s in segments])
        n = len(a)
        if self.config.backward:
            a, b = np.concatenate([a, b]), np.concatenate([b, a])
        flows = _to_host_float16(self.backend.predict(torch.from_numpy(a), torch.from_numpy(b)))
        offset = 0
        for seg in segments:
            k = seg.pairs
            forward = flows[offset : offset + k]
            backward = flows[n + offset : n + offset + k] if self.config.backward else None
            self.writes.submit(seg.output.store, seg.first, forward, backward)
            offset += k
            seg.output.submitted += k
            if seg.output.done:
                self._close(seg.output.index)

    def _close(self, index: int) -> None:
        output = self.outputs.pop(index)
        self.writes.submit(self._publish, output)

    def _publish(self, output: _VideoOutput) -> None:
        """In the writer thread, after every store of this video: rename into place, record."""
        output.context.__exit__(None, None, None)
        seconds = time.perf_counter() - output.started
        self.writer.record(
            output.job.key,
            {
                "frames": len(output.job.video),
                "pairs": output.pairs,
                "seconds": round(seconds, 3),
                "pid": os.getpid(),
            },
        )
        log.debug("%s: %d pairs in %.2fs", output.job.key, output.pairs, seconds)
