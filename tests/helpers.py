"""Shared helpers of the model/training/export tests: a tiny synth dataset, a masks
artifact made from its GT moving instances (what a perfect motion-mask stage would give)
and a tiny training configuration that runs in seconds on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from stages.artifacts import Artifact, ArtifactStore
from stages.datasets import open_dataset
from stages.flow.stage import FlowConfig, compute_flow
from stages.zarrstore import (
    MASKS_STORE,
    frame_array,
    open_video,
    video_names,
    write_video,
)

TINY_MODEL = dict(num_slots=4, encoder_width=0.125, decoder_channels=8)
# `diod train` options of the CLI tests' tiny run (fp32 and no loader process: exact and quick)
TINY_CLI_OPTIONS = [
    "--clip-length", "2", "--size", "32x64", "--num-slots", "3", "--encoder-width", "0.125",
    "--workers", "0", "--precision", "fp32",
]  # fmt: skip


def tiny_synth(
    out: Path, seed: int = 1, train_videos: int = 2, val_videos: int = 1, frames: int = 6
) -> Path:
    from stages.synthgen import SynthConfig, generate

    config = SynthConfig(
        seed=seed,
        train_videos=train_videos,
        val_videos=val_videos,
        frames=frames,
        height=32,
        width=64,
    )
    return generate(out, config)


#: the size of ``tiny_street_lidar``'s frames, which its runs train at
STREET_SIZE = (48, 160)


def tiny_street_lidar(out: Path) -> tuple[Path, ArtifactStore]:
    """Three street videos with LiDAR (two train, one val) under ``out``/data and a
    workspace ``out``/runs holding their GT-moving masks: what LiDAR training needs."""
    from stages.synthgen import StreetConfig, generate

    height, width = STREET_SIZE
    config = StreetConfig(
        train_videos=2, val_videos=1, frames=5, height=height, width=width, lidar=True
    )
    root = generate(out / "data", config, workers=1)
    store = ArtifactStore(out / "runs")
    gt_masks_artifact(store, root)
    return root, store


def gt_masks_artifact(store: ArtifactStore, root: Path, dataset: str = "synth") -> Artifact:
    """A masks artifact in the common format: ids 1..M of the GT moving objects per frame."""
    ds = open_dataset(dataset, root)
    params = {"method": "gt-moving", "root": str(Path(root).resolve())}
    with store.open(dataset, "masks", params) as writer:
        if writer.was_complete:
            return writer.artifact()
        for split in ds.splits():
            for video in ds.videos(split):
                moving = sorted(ds.moving_ids(video))
                h, w = ds.frame_size(video)
                attrs = dict(
                    height=h,
                    width=w,
                    source_height=h,
                    source_width=w,
                    frame_names=list(video.frames),
                    split=split,
                    method="gt-moving",
                )
                with write_video(writer, MASKS_STORE, split, video.name, attrs) as group:
                    array = frame_array(group, "masks", (len(video), h, w), np.uint8)
                    for i in range(len(video)):
                        gt = ds.instances(video, i)
                        present = [m for m in moving if (gt == m).any()]
                        lut = np.zeros(int(gt.max()) + 1, np.uint8)
                        lut[present] = np.arange(1, len(present) + 1)
                        array[i] = lut[gt]
        return writer.complete({})


# the tiny run's settings (flat, by setting name) over the synth-cpu preset
TINY_SETTINGS = dict(
    steps=4,
    batch_size=2,
    clip_length=3,
    input_size=(32, 64),
    num_slots=TINY_MODEL["num_slots"],
    encoder_width=TINY_MODEL["encoder_width"],
    decoder_channels=TINY_MODEL["decoder_channels"],
    warmup=2,
    num_workers=0,
    precision="fp32",
    device="cpu",
    checkpoint_every=2,
    log_every=1,
    val_every=0,
    seed=0,
)


def tiny_request(stage: str = "burnin", dataset: str = "synth", **overrides):
    """A ``TrainRequest`` of the tiny run; ``overrides`` are settings or request fields
    (masks, burnin, root, resume, force, preset)."""
    from dataclasses import fields

    from stages.train import TrainRequest

    inputs = {f.name for f in fields(TrainRequest)}
    given = {**TINY_SETTINGS, **{k: v for k, v in overrides.items() if k not in inputs}}
    if "epochs" in overrides:
        given.pop("steps")
    request = {k: v for k, v in overrides.items() if k in inputs}
    request.setdefault("preset", "synth-cpu")
    return TrainRequest(stage=stage, dataset=dataset, given=given, **request)


def as_torchrun_rank(rank: int, world: int, port: int) -> None:
    """Give this (spawned) process the environment torchrun gives rank ``rank`` of
    ``world`` on localhost, and one thread (two ranks share the 2 test cores)."""
    import torch

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)


def all_masks(art: Artifact) -> dict[str, np.ndarray]:
    """Every video's masks (T, H, W) of a masks artifact, by "split/video"."""
    return {
        f"{split}/{video}": open_video(art, MASKS_STORE, split, video)["masks"][:]
        for split in art.params["splits"]
        for video in video_names(art, MASKS_STORE, split)
    }


def write_gt_flow_artifact(store: ArtifactStore, dataset: str, root: Path, backward: bool = False):
    """The dataset's GT flow as a flow artifact (``diod flow --model gt``), backward too if
    asked."""
    config = FlowConfig(dataset, root, model="gt", ckpt=None, backward=backward)
    return compute_flow(store, config)


def export_artifact(
    store: ArtifactStore,
    dataset: str,
    root: Path,
    slots: dict[str, np.ndarray],
    params: dict,
    num_slots: int,
    *,
    split: str = "val",
    attrs: dict | None = None,
    scores: bool = True,
) -> Artifact:
    """An export artifact holding ``slots`` (T, h, w) per video of ``split``, every segment
    scored 1; the last slot is the background."""
    with store.open(dataset, "export", {**params, "root": str(root)}) as w:
        for name, s in slots.items():
            group_attrs = dict(num_slots=num_slots, background_slot=num_slots - 1, **(attrs or {}))
            with write_video(w, "predictions.zarr", split, name, group_attrs) as g:
                frame_array(g, "slots", s.shape, np.uint8)[:] = s
                if scores:
                    frame_array(g, "scores", (len(s), num_slots), np.float32)[:] = 1.0
        return w.complete()


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """``diod ARGS`` in this process: (exit code, stdout, stderr)."""
    import sys

    import pytest

    from diodcli.main import main

    with pytest.raises(SystemExit) as exc:
        main(args)
        sys.exit(0)
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def synth_cli(out: Path, *options: str) -> subprocess.CompletedProcess:
    """``diod data synth --out OUT OPTIONS`` in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "diodcli.main", "data", "synth", "--out", str(out), *options],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )


def round_trip_errors(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """|f(x) + b(x + f(x))| per pixel of one pair's (2, H, W) flows whose forward flow lands
    inside the frame: near zero wherever the point stays visible (occlusions excepted)."""
    h, w = forward.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    to_x, to_y = xs + forward[0], ys + forward[1]
    inside = (to_x >= 0) & (to_x <= w - 1) & (to_y >= 0) & (to_y <= h - 1)
    back = [cv2.remap(b, to_x, to_y, cv2.INTER_LINEAR) for b in backward.astype(np.float32)]
    return np.hypot(forward[0] + back[0], forward[1] + back[1])[inside]
