"""`diod train --stage burnin`: the burn-in training artifact.

``train(store, config)`` resolves the preset and options into one config, builds the
model, data and objective, and runs the loop inside the artifact (stage ``burnin``,
upstream {"masks": id}). ``run_artifact`` is the part every training stage shares: the
artifact's identity, resume decision, rank-0 writing and publication; the distillation
stage calls it with its own objective.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stages.artifacts import Artifact, ArtifactStore, artifact_id
from stages.datasets import open_dataset
from stages.errors import UserError
from stages.evaluate import dataset_root
from stages.model import DIOD, ModelConfig
from stages.model.encoder import ResNet18Encoder
from stages.progress import log
from stages.train import checkpoint
from stages.train.burnin import BurninObjective
from stages.train.data import Augment, ClipDataset
from stages.train.loop import (
    Distributed,
    LoopConfig,
    Objective,
    Validate,
    resolve_device,
    resolve_precision,
    run,
)
from stages.train.losses import REGIONS
from stages.train.presets import preset
from stages.train.validate import make_validator

STAGE = "burnin"
FORMAT_VERSION = 1


@dataclass
class TrainConfig:
    """Options of `diod train`; None means "from the preset"."""

    dataset: str
    masks: str | None = None  # masks artifact id (prefix); None: the newest complete one
    root: str | None = None  # dataset root; None: the one recorded upstream
    preset: str | None = None  # None: the dataset's default preset
    split: str = "train"
    val_split: str = "val"
    val_videos: int = 8
    steps: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    warmup: int | None = None
    decay: int | None = None
    grad_clip: float | None = None
    alpha: float | None = None
    reg_region: str | None = None
    num_slots: int | None = None
    clip_length: int | None = None
    input_size: tuple[int, int] | None = None
    encoder_width: float | None = None
    decoder_channels: int | None = None
    gru_hidden: int | None = None
    crop_top: float | None = None  # fraction of the frame height left out at the top
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    num_workers: int | None = None  # None: cores - 1, at least 1, at most 8
    threads: int | None = None  # CPU compute threads; None: torch's default (all cores)
    checkpoint_every: int | None = None
    keep_checkpoints: int = 2
    log_every: int = 25
    val_every: int | None = None
    resume: bool = False
    force: bool = False


def resolved_options(config: TrainConfig) -> dict[str, Any]:
    """The preset's values overridden by every option the user gave."""
    name, values = preset(config.preset, config.dataset)
    if config.steps is not None and config.epochs is not None:
        raise UserError("--steps and --epochs are exclusive: give one")
    given = {f.name: getattr(config, f.name) for f in fields(config)}
    out = {
        "steps": None,
        "epochs": None,
        **values,
        **{k: v for k, v in given.items() if v is not None},
    }
    out["preset"] = name
    if config.steps is not None:
        out["epochs"] = None
    if config.epochs is not None:
        out["steps"] = None
    if out.get("num_workers") is None:
        out["num_workers"] = max(1, min(8, (os.cpu_count() or 2) - 1))
    out["input_size"] = tuple(out["input_size"])
    h, w = out["input_size"]
    if h % 4 or w % 4:
        raise UserError(f"--size {h}x{w}: both sides must be multiples of 4 (maps are at 1/4)")
    if not 0.0 <= out["crop_top"] < 1.0:
        raise UserError(f"crop_top {out['crop_top']}: expected a fraction of the height in [0, 1)")
    if out["reg_region"] not in REGIONS:
        raise UserError(f"--reg-region {out['reg_region']}: expected one of {', '.join(REGIONS)}")
    for key in ("batch_size", "clip_length", "num_slots"):
        if out[key] < 1:
            raise UserError(f"--{key.replace('_', '-')} {out[key]}: expected a positive integer")
    return out


def model_config(options: dict[str, Any]) -> ModelConfig:
    return ModelConfig(
        num_slots=options["num_slots"],
        encoder_width=options["encoder_width"],
        decoder_channels=options["decoder_channels"],
        gru_hidden=options["gru_hidden"],
    )


def loop_config(options: dict[str, Any], steps: int) -> LoopConfig:
    return LoopConfig(
        steps=steps,
        **{
            k: options[k]
            for k in (
                "batch_size",
                "lr",
                "warmup",
                "decay",
                "grad_clip",
                "device",
                "precision",
                "channels_last",
                "checkpoint_every",
                "keep_checkpoints",
                "log_every",
                "val_every",
                "num_workers",
                "seed",
            )
        },
        threads=options.get("threads"),
    )


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


def run_artifact(
    store: ArtifactStore,
    dataset: str,
    stage: str,
    params: dict[str, Any],
    upstream: dict[str, Artifact],
    *,
    model: nn.Module,
    objective: Objective,
    data: ClipDataset,
    loop: LoopConfig,
    resolved: dict[str, Any],
    validate: Validate | None,
    resume: bool,
    force: bool,
    format_version: int = FORMAT_VERSION,
) -> Artifact:
    """Train inside the artifact these inputs determine; rank 0 writes it, every rank trains.

    A complete artifact is returned as is (unless ``force``); an interrupted one continues
    from its last checkpoint with ``resume``."""
    ranks = Distributed.from_env()
    ranks.init(resolve_device(loop.device, ranks))
    art_id = artifact_id(
        dataset, stage, params, {s: a.id for s, a in upstream.items()}, format_version
    )
    path = store.path_for(dataset, stage, art_id)
    opener = (
        store.open(dataset, stage, params, upstream, format_version=format_version, force=force)
        if ranks.is_main
        else contextlib.nullcontext()
    )
    with opener as writer:
        complete = ranks.broadcast(writer.was_complete if writer is not None else None)
        if complete:
            log.info(
                "%s/%s/%s is complete: nothing to do (--force to retrain)", dataset, stage, art_id
            )
            return store.get(dataset, stage, art_id)
        start = resume_point(path, resume, force)
        if resume and start is None:
            log.info("--resume: no checkpoint of this configuration yet, starting at step 0")
        summary = run(
            writer, model, objective, data, loop, resolved, resume_from=start, validate=validate
        )
        if writer is not None:
            writer.complete({"objective": objective.name, **summary})
    ranks.barrier()  # the other ranks return the artifact once rank 0 has published it
    return store.get(dataset, stage, art_id)


@dataclass
class RunSetup:
    """What burn-in and distillation resolve alike before building their objective."""

    data: ClipDataset
    ranks: Distributed
    steps: int
    steps_per_epoch: int
    device: torch.device
    precision: str


def prepare_run(
    config: TrainConfig, root: Path, masks: Artifact, options: dict[str, Any]
) -> RunSetup:
    """The training split's clips, the run length (``--steps``, or ``--epochs`` times the
    optimizer steps one epoch takes per rank), the device and the precision."""
    height, width = options["input_size"]
    stride = ResNet18Encoder.STRIDE
    data = ClipDataset(
        config.dataset,
        root,
        masks,
        config.split,
        options["clip_length"],
        (height, width),
        (height // stride, width // stride),
        Augment() if config.augment else None,
        config.seed,
        options.get("crop_top", 0.0),
    )
    ranks = Distributed.from_env()
    steps_per_epoch = (len(data) // ranks.world) // options["batch_size"]
    steps = options.get("steps")
    if steps is None:
        steps = options["epochs"] * steps_per_epoch
    if steps < 1:
        raise UserError(f"--steps/--epochs: expected at least one step, got {steps}")
    device = resolve_device(config.device, ranks)
    return RunSetup(
        data,
        ranks,
        steps,
        steps_per_epoch,
        device,
        resolve_precision(config.precision, device),
    )


def run_record(
    options: dict[str, Any], setup: RunSetup, root: Path, model: ModelConfig, **extra: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(resolved config saved in every checkpoint, params hashed into the artifact id)."""
    resolved = {
        **{
            k: v
            for k, v in options.items()
            if k not in ("resume", "force", "masks", "root", "dataset")
        },
        "input_size": list(setup.data.input_size),
        "map_size": list(setup.data.map_size),
        "steps": setup.steps,
        "steps_per_epoch": setup.steps_per_epoch,
        "precision": setup.precision,
        "model": model.to_dict(),
        **extra,
    }
    params = {
        **{k: v for k, v in resolved.items() if k not in _RUNTIME},
        "root": str(root.resolve()),
        "world_size": setup.ranks.world,
    }
    return resolved, params


def validator(
    config: TrainConfig, root: Path, options: dict[str, Any], setup: RunSetup
) -> Validate | None:
    """Rank 0's periodic scoring on ``--val-split`` (None: no split, or no GT there)."""
    if not (setup.ranks.is_main and config.val_split):
        return None
    return make_validator(
        open_dataset(config.dataset, root),
        config.val_split,
        setup.data.input_size,
        options["clip_length"],
        config.val_videos,
        setup.device,
        setup.precision,
        options.get("crop_top", 0.0),
    )


def train(store: ArtifactStore, config: TrainConfig) -> Artifact:
    """Burn-in on a masks artifact; returns the complete ``burnin`` artifact."""
    options = resolved_options(config)
    masks = store.resolve(config.dataset, "masks", config.masks)
    root = Path(config.root) if config.root else dataset_root(store, masks)
    setup = prepare_run(config, root, masks, options)
    mcfg = model_config(options)
    resolved, params = run_record(options, setup, root, mcfg)
    torch.manual_seed(config.seed)
    model = DIOD(mcfg)
    objective = BurninObjective(alpha=options["alpha"], region=options["reg_region"])
    log.info(
        "burn-in: preset %s, %d steps (%d per epoch), batch %d x T=%d at %dx%d, K=%d, %s on %s",
        options["preset"],
        setup.steps,
        setup.steps_per_epoch,
        options["batch_size"],
        options["clip_length"],
        *setup.data.input_size,
        mcfg.num_slots,
        setup.precision,
        setup.device,
    )
    return run_artifact(
        store,
        config.dataset,
        STAGE,
        params,
        {"masks": masks},
        model=model,
        objective=objective,
        data=setup.data,
        loop=loop_config(options, setup.steps),
        resolved=resolved,
        validate=validator(config, root, options, setup),
        resume=config.resume,
        force=config.force,
    )


# Options that change how a run goes, not what it computes: not part of the artifact id.
_RUNTIME = (
    "device",
    "num_workers",
    "threads",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "val_every",
    "val_videos",
    "val_split",
    "channels_last",
)
