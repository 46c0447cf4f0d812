"""What every training stage does alike around its objective: the request (which inputs,
resume or start over), the clips and the run length, the artifact's identity, resume
decision, rank-0 writing and publication, and rank 0's periodic validation.

A stage (burn-in, distillation) resolves its ``RunConfig``, builds its model and objective,
and hands them to ``run_artifact``; everything else is here, once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stages.artifacts import Artifact, ArtifactStore, artifact_id
from stages.datasets import open_dataset
from stages.errors import UserError
from stages.frames import size_at_area
from stages.hardware import Distributed, resolve_device, usable_cores, worker_count
from stages.lidar.augment import LidarAugment
from stages.model import DIOD
from stages.model.encoder import ResNet18Encoder
from stages.progress import log
from stages.train import checkpoint
from stages.train.config import RunConfig, resolve
from stages.train.data import Augment, ClipDataset
from stages.train.initialise import init_source, load_matching
from stages.train.loop import Objective, Validate, run
from stages.train.schedule import lr_factor
from stages.train.validate import make_validator

FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainRequest:
    """One ``diod train`` call: the stage, the settings the user gave (flat, by setting
    name; the rest comes from the preset), and the inputs, which are not settings: the
    upstream artifact (masks for burn-in, a burn-in for distillation; None: the newest
    complete one), the dataset root (None: the one recorded upstream) and what to do with
    an existing run of the same configuration. ``init``: weights to start from
    (``stages.train.initialise``); a distillation given one starts from it, not a burn-in.
    ``rgb_model``, ``lidar_model``: xMOD's two trained networks (artifact ids or files)."""

    stage: str
    dataset: str
    given: Mapping[str, Any] = field(default_factory=dict)
    preset: str | None = None
    masks: str | None = None
    burnin: str | None = None
    root: str | None = None
    init: str | None = None
    rgb_model: str | None = None
    lidar_model: str | None = None
    resume: bool = False
    force: bool = False
    dry_run: bool = False


@dataclass
class RunSetup:
    """What every stage resolves alike before building its objective."""

    config: RunConfig
    root: Path
    data: ClipDataset
    ranks: Distributed
    steps: int
    steps_per_epoch: int
    device: torch.device
    init: dict[str, Any] | None = None  # --init: its source and what loaded
    #: xMOD: the LiDAR network's run configuration (``config`` is the RGB network's) and
    #: the two networks' sources
    partner: RunConfig | None = None
    sources: dict[str, dict[str, str]] | None = None

    def record(self) -> dict[str, Any]:
        """What every checkpoint keeps of the run: its configuration and derived sizes."""
        partner = {"lidar_config": self.partner.to_dict()} if self.partner is not None else {}
        return {
            **partner,
            "config": self.config.to_dict(),
            "run": {
                "steps": self.steps,
                "steps_per_epoch": self.steps_per_epoch,
                "map_size": list(self.data.map_size),
                "world_size": self.ranks.world,
            },
        }

    def plan(self) -> str:
        """The run's length in words: steps, what an epoch is here, the LR at the last step."""
        loop, data = self.config.loop, self.config.data
        items = len(self.data)
        per = "window" if data.epoch == "windows" else "video (one random window each)"
        last_lr = loop.lr * lr_factor(self.steps, loop.warmup, loop.decay)
        length = f"{loop.epochs} epochs = " if loop.epochs is not None else ""
        return (
            f"{self.config.stage} plan: {length}{self.steps} steps of batch "
            f"{loop.batch_size} x {self.ranks.world} process(es); an epoch is {items} "
            f"item(s), one per {per}, {self.steps_per_epoch} steps; LR {loop.lr:g} after "
            f"{loop.warmup} warm-up steps, {last_lr:.3g} at the last step"
        )

    def params(self) -> dict[str, Any]:
        """What the artifact id hashes: the whole configuration but its runtime section,
        the dataset root and the number of processes (it sets the data each step sees)."""
        params = {
            "config": self.config.identity(),
            "root": str(self.root.resolve()),
            "world_size": self.ranks.world,
        }
        if self.init is not None:
            params["init"] = self.init["source"]
        if self.partner is not None:
            params["lidar_config"] = self.partner.identity()
            params["sources"] = self.sources
        return params

    def initialise(self, store: ArtifactStore, ref: str | None, model: DIOD) -> None:
        """``--init ref``: load its matching tensors into ``model`` and remember what."""
        if ref is None:
            return
        source = init_source(store, ref)
        report = load_matching(model, source.weights, source.decoder_layers)
        log.info(
            "--init %s: %d of %d tensors loaded; re-initialised: %s",
            ref,
            report["loaded"],
            report["tensors"],
            ", ".join(report["reinitialised"]) or "none",
        )
        self.init = {"source": source.identity, **report}


AUTO_SIZE = "auto"


def resolve_request(request: TrainRequest, burnin: Mapping[str, Any] | None = None) -> RunConfig:
    """The run's configuration, every setting checked before any input is looked up; with
    ``--size auto``, the configuration the run would have without it (see ``auto_size``)."""
    given = {k: v for k, v in request.given.items() if not (k == "input_size" and v == AUTO_SIZE)}
    return resolve(request.stage, request.dataset, given, preset=request.preset, burnin=burnin)


def auto_size(
    request: TrainRequest,
    config: RunConfig,
    root: Path,
    burnin: Mapping[str, Any] | None = None,
) -> RunConfig:
    """``--size auto``: ``config`` at the training videos' aspect ratio and about the area of
    its own input size (the preset's, or the burn-in's), so footage of any shape trains
    unsquashed at the preset's cost (``stages.frames.size_at_area``); else ``config``."""
    if request.given.get("input_size") != AUTO_SIZE:
        return config
    ds = open_dataset(request.dataset, root)
    videos = ds.videos(config.data.split)
    if not videos:
        raise UserError(f"--size auto: no videos in split '{config.data.split}' of {root}")
    frame = ds.frame_size(videos[0])
    size = size_at_area(
        frame, config.data.input_size, config.data.crop_top, config.model.input_multiple
    )
    log.info("--size auto: %dx%d frames -> input %dx%d", *frame, *size)
    given = {**request.given, "input_size": size}
    return resolve(request.stage, request.dataset, given, preset=request.preset, burnin=burnin)


def prepare_run(
    config: RunConfig, root: Path, masks: Artifact, lidar: LidarAugment | None = None
) -> RunSetup:
    """The training split's clips, the run length (``steps``, or ``epochs`` times the
    optimizer steps one epoch takes per rank) and the device. The clips carry range maps
    for a LiDAR network, or when ``lidar`` says how (xMOD's RGB-led run)."""
    if lidar is None and config.model.modality == "lidar":
        lidar = LidarAugment(config.data.point_drop, config.model.lidar_fill)
    data_cfg = config.data
    height, width = data_cfg.input_size
    stride = ResNet18Encoder.STRIDE
    data = ClipDataset(
        config.dataset,
        root,
        masks,
        data_cfg.split,
        data_cfg.clip_length,
        (height, width),
        (height // stride, width // stride),
        Augment() if data_cfg.augment else None,
        config.loop.seed,
        data_cfg.crop_top,
        data_cfg.epoch,
        lidar=lidar,
    )
    if lidar is not None:
        check_lidar(data)
    ranks = Distributed.from_env()
    steps_per_epoch = (len(data) // ranks.world) // config.loop.batch_size
    steps = config.loop.steps
    if steps is None:
        steps = config.loop.epochs * steps_per_epoch
    if steps < 1:
        raise UserError(f"--steps/--epochs: expected at least one step, got {steps}")
    device = resolve_device(config.runtime.device)
    return RunSetup(config, root, data, ranks, steps, steps_per_epoch, device)


def check_lidar(data: ClipDataset) -> None:
    """A LiDAR model's data have a sweep at every frame: the first frame of each video is
    looked at before training starts (a missing one later stops the run with the same
    error, from the loader)."""
    ds = open_dataset(data.dataset_name, data.root)
    for video in data.videos:
        if ds.lidar(video, 0, data.input_size) is None:
            where = video.extra.get("dir", video.name)
            raise UserError(
                f"{where}: no LiDAR; a LiDAR network trains on a sweep per frame (diod data "
                "synth --lidar, KITTI raw with velodyne_points)"
            )


def loader_workers(config: RunConfig) -> int:
    """Data-loading processes: as asked, else cores - 1 (one core computes), 1 to 8."""
    return worker_count(config.runtime.num_workers, max(1, min(8, usable_cores() - 1)), math.inf)


def resume_point(path: Path, resume: bool, force: bool) -> Path | None:
    """The checkpoint to continue from, None to start at step 0.

    An interrupted run with checkpoints is continued only when asked (``--resume``), so a
    changed mind is never silently ignored; ``--force`` starts over."""
    if force:
        return None
    found = checkpoint.latest(path)
    if found is None:
        return None
    if not resume:
        raise UserError(
            f"{path}: an interrupted run of this configuration has a checkpoint at step {found[0]}: "
            "pass --resume to continue it or --force to start over"
        )
    return found[1]


def validator(setup: RunSetup) -> Validate | None:
    """Rank 0's periodic scoring on ``val_split`` (None: no split, or no GT there)."""
    runtime = setup.config.runtime
    if not (setup.ranks.is_main and runtime.val_split):
        return None
    return make_validator(
        open_dataset(setup.config.dataset, setup.root),
        runtime.val_split,
        setup.data.input_size,
        setup.config.data.clip_length,
        runtime.val_videos,
        setup.device,
        setup.config.loop.precision,
        setup.config.data.crop_top,
    )


def run_artifact(
    store: ArtifactStore,
    setup: RunSetup,
    upstream: dict[str, Artifact],
    request: TrainRequest,
    *,
    model: nn.Module,
    objective: Objective,
    validate: Validate | None,
) -> Artifact:
    """Train inside the artifact these inputs determine; rank 0 writes it, every rank trains.

    A complete artifact is returned as is (unless ``force``); an interrupted one continues
    from its last checkpoint with ``resume``."""
    config, ranks = setup.config, setup.ranks
    ranks.init(setup.device)
    params = setup.params()
    upstream_ids = {s: a.id for s, a in upstream.items()}
    art_id = artifact_id(config.dataset, config.stage, params, upstream_ids, FORMAT_VERSION)
    path = store.path_for(config.dataset, config.stage, art_id)
    opener = (
        store.open(
            config.dataset,
            config.stage,
            params,
            upstream,
            format_version=FORMAT_VERSION,
            force=request.force,
        )
        if ranks.is_main
        else contextlib.nullcontext()
    )
    with opener as writer:
        complete = ranks.broadcast(writer.was_complete if writer is not None else None)
        if complete:
            log.info(
                "%s/%s/%s is complete: nothing to do (--force to retrain)",
                config.dataset,
                config.stage,
                art_id,
            )
            return store.get(config.dataset, config.stage, art_id)
        start = resume_point(path, request.resume, request.force)
        if request.resume and start is None:
            log.info("--resume: no checkpoint of this configuration yet, starting at step 0")
        summary = run(
            writer,
            model,
            objective,
            setup.data,
            config.loop,
            config.runtime,
            setup.steps,
            setup.record(),
            workers=loader_workers(config),
            resume_from=start,
            validate=validate,
        )
        if writer is not None:
            init = {"init": setup.init} if setup.init is not None else {}
            writer.complete({"objective": objective.name, **summary, **init})
    ranks.barrier()  # the other ranks return the artifact once rank 0 has published it
    return store.get(config.dataset, config.stage, art_id)
