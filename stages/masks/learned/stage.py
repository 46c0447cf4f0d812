"""``diod segmenter``: flow artifacts of datasets with moving/static ground truth (our
synthetic worlds) -> a versioned ``segmenter`` artifact holding a trained model file.

Resumable: the network, optimiser and sampler are checkpointed every
``checkpoint_every`` steps (atomically), and a killed run continues from the last
checkpoint to the same weights an uninterrupted one reaches. The examples are computed once
per flow artifact into an on-disk store and memory-mapped (``example_store``), so memory
does not grow with the data and a resumed run does not compute them again. The model file
is published only when training is complete; the checkpoint and the stores go then.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stages import zarrstore
from stages.artifacts import Artifact, ArtifactStore, ArtifactWriter, atomic_torch_save
from stages.datasets import Dataset, Video, open_dataset
from stages.errors import UserError
from stages.hardware import cpu_threads
from stages.masks.learned import example_store
from stages.masks.learned.examples import IGNORE, Example, video_examples
from stages.masks.learned.features import CHANNELS
from stages.masks.learned.modelfile import (
    THRESHOLD,
    Segmenter,
    load_segmenter,
    segmenter_state,
)
from stages.masks.learned.network import MotionSegmenter
from stages.masks.learned.params import SegmenterTraining
from stages.masks.learned.training import Trainer
from stages.masks.params import MotionParams
from stages.masks.stage import resolve_segmenter
from stages.progress import log, track

STAGE = "segmenter"
FLOW_STAGE = "flow"
FORMAT_VERSION = 1
MODEL_FILE = "segmenter.pt"
CHECKPOINT = "checkpoint.pt"
#: the example stores, one per flow artifact (example_store); removed when the model is published
EXAMPLES = "examples"
#: ``--flow all``
ALL = "all"


@dataclass(frozen=True)
class SegmenterConfig:
    """What ``diod segmenter`` trains: on the flow artifacts ``flows`` (ids or prefixes of
    ``dataset``; ``all``: every complete one; empty: the newest complete one) and their
    datasets' ground truth; from the weights of ``init`` (``builtin``, a model file or a
    segmenter artifact id: fine-tuning) or from scratch (None)."""

    dataset: str
    flows: tuple[str, ...] = ()
    training: SegmenterTraining = field(default_factory=SegmenterTraining)
    motion: MotionParams = field(default_factory=MotionParams)
    force: bool = False
    init: str | None = None


def _videos(dataset: str, flow: Artifact) -> tuple[Dataset, list[Video]]:
    """The dataset and every video the flow artifact covers (each must have the moving/static
    ground truth the targets come from)."""
    root = flow.params.get("root")
    if root is None:
        raise UserError(f"--flow {flow.id}: the flow artifact records no dataset root")
    ds = open_dataset(dataset, root)
    videos = []
    for split in flow.params.get("splits") or ds.splits():
        for video in ds.videos(split):
            if ds.moving_ids(video) is None or not video.instances:
                raise UserError(
                    f"--flow {flow.id}: video '{split}/{video.name}' of {root} has no moving/"
                    "static ground truth (instance ids and moving ids: a synth dataset)"
                )
            videos.append(video)
    return ds, videos


def _examples(
    writer: ArtifactWriter, dataset: str, flow: Artifact, motion: MotionParams
) -> list[Example]:
    """Every frame of every video the flow artifact covers, with its target, memory-mapped
    from the artifact's example store (written once, published atomically; a resumed run
    reads it back)."""
    ds, videos = _videos(dataset, flow)
    directory = writer.path / EXAMPLES / flow.id
    if not example_store.is_complete(directory):
        flows = zarrstore.store_path(flow, zarrstore.FLOW_STORE)
        computed = (
            example
            for video in track(videos, f"examples from flow {flow.id}")
            for example in video_examples(ds, video, str(flows / video.split / video.name), motion)
        )
        with writer.staging(f"{EXAMPLES}/{flow.id}") as tmp:
            example_store.write_examples(tmp, computed)
    return example_store.open_examples(directory)


def _describe(examples: list[Example]) -> dict[str, Any]:
    pixels = sum(t.size for _, t in examples)
    moving = sum(int((t == 1).sum()) for _, t in examples)
    ignored = sum(int((t == IGNORE).sum()) for _, t in examples)
    sizes = sorted({f"{t.shape[0]}x{t.shape[1]}" for _, t in examples})
    return {
        "frames": len(examples),
        "sizes": sizes,
        "moving_fraction": round(moving / max(pixels, 1), 5),
        "ignored_fraction": round(ignored / max(pixels, 1), 5),
    }


def _initial(path: Path, config: SegmenterConfig) -> MotionSegmenter:
    """The network of the ``--init`` model file, to fine-tune; its features must be the ones
    this training computes (the same camera-fit settings)."""
    start = load_segmenter(path, "--init")
    if start.motion != config.motion:
        raise UserError(
            f"--init {config.init}: trained with other camera-fit settings than these examples "
            "use; fine-tune it with its own (its model file records them)"
        )
    return start.model


def train_segmenter(store: ArtifactStore, config: SegmenterConfig) -> Artifact:
    """Write (or reuse, or resume) the segmenter artifact ``config`` determines."""
    if ALL in config.flows:
        flows = [a for a in store.list(config.dataset, FLOW_STAGE) if a.is_complete]
        if not flows:
            raise UserError(f"--flow all: no complete flow artifact of {config.dataset}")
    else:
        flows = [store.resolve(config.dataset, FLOW_STAGE, r) for r in config.flows or (None,)]
    start = None if config.init is None else resolve_segmenter(store, config.init, "--init")
    initial = None if start is None else _initial(start[0], config)  # checked before any work
    params = {
        "flows": sorted(f.id for f in flows),
        **({} if start is None else {"init": start[1]}),  # from-scratch ids stay as they were
        "training": dataclasses.asdict(config.training),
        "motion": dataclasses.asdict(config.motion),
        "channels": list(CHANNELS),
    }
    with store.open(
        config.dataset, STAGE, params, format_version=FORMAT_VERSION, force=config.force
    ) as writer:
        if writer.was_complete:
            log.info("segmenter %s is complete: reusing it (--force retrains)", writer.id)
            return writer.artifact()
        examples = [e for f in flows for e in _examples(writer, config.dataset, f, config.motion)]
        data = _describe(examples)
        log.info(
            "segmenter %s: %d frames (%s)", writer.id, data["frames"], ", ".join(data["sizes"])
        )
        torch.set_num_threads(cpu_threads())
        trainer = Trainer(config.training, initial)
        checkpoint = writer.path / CHECKPOINT
        if checkpoint.exists():
            trainer.load_state_dict(torch.load(checkpoint, weights_only=False))
            log.info("resuming segmenter %s at step %d", writer.id, trainer.step)
        every = config.training.checkpoint_every
        for stop in track(
            range(trainer.step + every, config.training.steps + every, every),
            "segmenter training",
        ):
            trainer.run(examples, until=stop)
            atomic_torch_save(trainer.state_dict(), checkpoint)
            writer.update(lambda m, s=trainer.step: m["progress"].update(step=s))
        segmenter = Segmenter(
            trainer.model,
            config.motion,
            THRESHOLD,
            {
                "artifact": writer.id,
                "dataset": config.dataset,
                "flows": params["flows"],
                "init": params.get("init"),
            },
        )
        with writer.staging(MODEL_FILE, is_dir=False) as tmp:
            torch.save(segmenter_state(segmenter), tmp)
        checkpoint.unlink()
        shutil.rmtree(writer.path / EXAMPLES)
        tail = trainer.losses[-min(100, len(trainer.losses)) :]
        summary = {
            "examples": data,
            "steps": trainer.step,
            "final_loss": round(float(np.mean(tail)), 4),
        }
        return writer.complete(summary)
