"""The generic trainer: everything about running steps that is not the loss.

The loop owns data loading, the optimizer and schedule, precision, DDP, checkpoints, logs
and validation; an ``Objective`` owns only the loss and any extra modules it needs (the
distillation teacher), so burn-in and distillation share this file unchanged.

Resuming: a checkpoint holds the model, extra modules, optimizer, schedule, scaler, step
and RNG states; batches are addressed by step (see ``data.ClipBatches``) and augmentation
is seeded per clip, so on CPU a resumed run reproduces the uninterrupted run's losses.

Distributed: under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in
DistributedDataParallel (NCCL on GPUs, gloo on CPU), each rank reads its DistributedSampler
share, and only rank 0 logs, validates and writes checkpoints.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from stages.artifacts import ArtifactWriter, atomic_write_bytes
from stages.hardware import Distributed, autocast, cpu_threads, resolve_device
from stages.progress import log, track
from stages.train import checkpoint
from stages.train import memory_format as memory_formats
from stages.train.config import LoopConfig, RuntimeConfig
from stages.train.data import ClipBatches, ClipDataset, collate, worker_init
from stages.train.schedule import make_optimizer, make_schedule

TRAIN_LOG = "logs/train.csv"
VAL_LOG = "logs/val.csv"
TENSORBOARD = "logs/tensorboard"


class Objective(Protocol):
    """What a training stage plugs into the loop."""

    name: str

    def extra_state(self) -> dict[str, nn.Module]:
        """Modules checkpointed with the model (e.g. {"teacher": teacher})."""

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise and the named terms to log. ``model`` may be DDP-wrapped."""

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after each optimizer step with the unwrapped model (e.g. EMA update)."""


# -- batches ------------------------------------------------------------------------------
def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Move a batch to the device; uint8 frames become float in [0, 1] there (4x less to
    load, pin and copy than float frames)."""
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if out["frames"].dtype == torch.uint8:
        out["frames"] = out["frames"].float().div_(255)
    return out


# -- logs ---------------------------------------------------------------------------------
class Logs:
    """CSV files (always) and TensorBoard (when the package is installed) under logs/."""

    def __init__(self, root: Path, start_step: int):
        self.root = root
        (root / "logs").mkdir(parents=True, exist_ok=True)
        for name in (TRAIN_LOG, VAL_LOG):
            self._truncate(root / name, start_step)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed: logging to CSV only")
        else:
            self.tb = SummaryWriter(str(root / TENSORBOARD), purge_step=start_step or None)

    @staticmethod
    def _truncate(path: Path, step: int) -> None:
        """Drop rows after the resumed step, so a resumed run's logs read as one run."""
        if not path.exists():
            return
        rows = list(csv.DictReader(path.open()))
        if not rows:
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["step"]) <= step)
        atomic_write_bytes(path, out.getvalue().encode())

    def write(self, name: str, step: int, values: dict[str, float], prefix: str) -> None:
        path = self.root / name
        row = {"step": step, **values}
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# -- the loop -----------------------------------------------------------------------------
Validate = Callable[[nn.Module, int], dict[str, float]]


@dataclass
class Trainer:
    """The model, its optimizer state and how one step runs (device, precision, DDP)."""

    model: nn.Module  # unwrapped: what is checkpointed and what after_step sees
    net: nn.Module  # what the loss calls: the model, or its DDP wrapper
    objective: Objective
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: str
    memory_format: str
    grad_clip: float

    @classmethod
    def build(
        cls,
        model: nn.Module,
        objective: Objective,
        loop: LoopConfig,
        runtime: RuntimeConfig,
        ranks: Distributed,
        frames_shape: tuple[int, ...],
        memory_format: str | None = None,
    ) -> Trainer:
        """``loop.precision`` is concrete (``config.resolve`` chose it for the device kind).

        ``frames_shape``: a batch's model inputs (B, T, C, H, W), what ``memory_format``
        (default: the runtime's) is timed on when it is ``auto``."""
        memory_format = memory_format or runtime.memory_format
        device = resolve_device(runtime.device)
        ranks.init(device)
        modules = (model, *objective.extra_state().values())
        for module in modules:
            module.to(device)
        memory_format = memory_formats.choose(
            memory_format, model, frames_shape, device, loop.precision, ranks
        )
        for module in modules:
            memory_formats.apply(module, memory_format)
        # a frozen encoder (DINOv2) trains no weights and keeps no optimizer state
        trained = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(trained, loop.lr)
        net = model
        if ranks.world > 1:
            net = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        return cls(
            model=model,
            net=net,
            objective=objective,
            optimizer=optimizer,
            schedule=make_schedule(optimizer, loop.warmup, loop.decay),
            scaler=torch.amp.GradScaler(device.type, enabled=loop.precision == "fp16"),
            device=device,
            precision=loop.precision,
            memory_format=memory_format,
            grad_clip=loop.grad_clip,
        )

    def step(
        self, batch: dict[str, torch.Tensor], step: int
    ) -> tuple[float, dict[str, float], torch.Tensor]:
        """One optimizer step on ``batch`` (already on the device); step is the count before it.

        Returns (loss, named terms, gradient norm before clipping)."""
        with autocast(self.device, self.precision):
            loss, terms = self.objective.loss(self.net, batch, step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}: {terms}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        self.objective.after_step(self.model, step + 1)
        return loss.item(), terms, grad_norm

    def state(self, step: int, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": step,
            "model": self.model.state_dict(),
            "model_config": self.model.config.to_dict(),
            "extra": {name: m.state_dict() for name, m in self.objective.extra_state().items()},
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": checkpoint.rng_state(),
            "memory_format": self.memory_format,
            **record,
            "objective": self.objective.name,
        }

    def load(self, state: dict[str, Any]) -> int:
        """Restore a checkpoint's state; returns its step."""
        self.model.load_state_dict(state["model"])
        for name, module in self.objective.extra_state().items():
            module.load_state_dict(state["extra"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        return int(state["step"])


def make_loader(
    data: ClipDataset, batches: ClipBatches, num_workers: int, device: torch.device
) -> DataLoader:
    return DataLoader(
        data,
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=num_workers,
        worker_init_fn=partial(worker_init, parent=os.getpid()),
        pin_memory=device.type == "cuda",
        # forked workers inherit the parent's thread-pool state (OpenCV, OpenMP, zarr's event
        # loop) and can deadlock in worker_init; spawned ones start clean, and as children of
        # this process they can die with it (a forkserver's children keep it alive, it them)
        multiprocessing_context="spawn" if num_workers else None,
    )


def _save(
    writer: ArtifactWriter, trainer: Trainer, step: int, record: dict[str, Any], keep: int
) -> None:
    with writer.staging(checkpoint.relpath(step), is_dir=False) as tmp:
        torch.save(trainer.state(step, record), tmp)
    for _, old in checkpoint.checkpoints(writer.path)[:-keep]:
        old.unlink(missing_ok=True)


def run(
    writer: ArtifactWriter | None,
    model: nn.Module,
    objective: Objective,
    data: ClipDataset,
    loop: LoopConfig,
    runtime: RuntimeConfig,
    steps: int,
    record: dict[str, Any],
    *,
    workers: int,
    resume_from: Path | None = None,
    validate: Validate | None = None,
) -> dict[str, Any]:
    """Train ``model`` for ``steps`` steps; ``writer`` is None on ranks other than 0.
    ``record`` (the run's configuration) goes into every checkpoint; ``workers`` data-loading
    processes feed it (0: loading in this process).

    Returns a summary (final losses, validation scores, throughput) for the manifest.
    """
    ranks = Distributed.from_env()
    torch.manual_seed(loop.seed)
    torch.set_num_threads(runtime.threads or cpu_threads())
    if runtime.threads is None:
        log.info(
            "%d CPU threads: the cores idle now (--threads N to fix it)", torch.get_num_threads()
        )
    state = checkpoint.load(resume_from) if resume_from is not None else None
    memory_format = runtime.memory_format
    if memory_format == memory_formats.AUTO and state is not None:
        memory_format = state.get("memory_format", memory_format)  # the run's own choice
    frames_shape = (loop.batch_size, data.clip_length, model.config.channels, *data.input_size)
    trainer = Trainer.build(model, objective, loop, runtime, ranks, frames_shape, memory_format)
    start = 0
    if state is not None:
        start = trainer.load(state)
        log.info("resuming from step %d (%s)", start, resume_from.name)

    batches = ClipBatches(
        len(data),
        loop.batch_size,
        loop.seed,
        rank=ranks.rank,
        world=ranks.world,
        start_step=start,
        total_steps=steps,
    )
    loader = make_loader(data, batches, workers, trainer.device)
    main = ranks.is_main and writer is not None
    logs = Logs(writer.path, start) if main else None
    summary: dict[str, Any] = {
        "device": str(trainer.device),
        "threads": torch.get_num_threads(),
        "precision": trainer.precision,
        "memory_format": trainer.memory_format,
        "world_size": ranks.world,
    }
    window = {"time": 0.0, "steps": 0}
    terms_sum: dict[str, float] = {}
    step = start
    tic = time.perf_counter()
    try:
        model.train()
        if main:
            loader = track(loader, f"{objective.name} steps {start}..{steps}", total=len(batches))
        for batch in loader:
            loss, terms, grad_norm = trainer.step(to_device(batch, trainer.device), step)
            step += 1
            for key, value in {"loss": loss, **terms}.items():
                terms_sum[key] = terms_sum.get(key, 0.0) + value
            window["steps"] += 1
            now = time.perf_counter()
            window["time"] += now - tic
            tic = now
            if not main:
                continue
            last = step == steps
            # rows also close at checkpoints, so a resumed run's rows average the same steps
            if step % runtime.log_every == 0 or step % runtime.checkpoint_every == 0 or last:
                clips = window["steps"] * loop.batch_size * ranks.world / window["time"]
                row = {k: v / window["steps"] for k, v in terms_sum.items()}
                row.update(
                    lr=trainer.schedule.get_last_lr()[0],
                    grad_norm=float(grad_norm),
                    clips_per_s=clips,
                    frames_per_s=clips * data.clip_length,
                )
                logs.write(TRAIN_LOG, step, row, "train")
                log.info(
                    "step %d/%d  %s  lr %.2e  %.2f it/s  %.1f clips/s",
                    step,
                    steps,
                    "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k in terms_sum),
                    row["lr"],
                    window["steps"] / window["time"],
                    clips,
                )
                if "clips_per_s" not in summary:  # the first row: the rest of the run's ETA
                    eta = (steps - step) * window["time"] / window["steps"]
                    log.info("ETA %s for %d more steps", _duration(eta), steps - step)
                summary.update(final={k: row[k] for k in terms_sum}, clips_per_s=clips)
                terms_sum, window = {}, {"time": 0.0, "steps": 0}
            if validate is not None and (
                last or (runtime.val_every and step % runtime.val_every == 0)
            ):
                scores = _validate(validate, model, step)
                logs.write(VAL_LOG, step, scores, "val")
                summary["validation"] = {"step": step, **scores}
            if step % runtime.checkpoint_every == 0 or last:
                _save(writer, trainer, step, record, runtime.keep_checkpoints)
            tic = time.perf_counter()  # validation and checkpoints are not training time
    finally:
        if logs is not None:
            logs.close()
    summary["steps"] = step
    return summary


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _validate(validate: Validate, model: nn.Module, step: int) -> dict[str, float]:
    model.eval()
    try:
        with torch.no_grad():
            scores = validate(model, step)
    finally:
        model.train()
    log.info(
        "validation at step %d: %s", step, "  ".join(f"{k} {v:.4f}" for k, v in scores.items())
    )
    return scores
