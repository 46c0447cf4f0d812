"""The distributed path on CPU: gloo, 2 processes, DistributedDataParallel + sampler."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from helpers import (
    TINY_CLI_OPTIONS,
    as_torchrun_rank,
    gt_masks_artifact,
    tiny_request,
    tiny_synth,
)

from stages.artifacts import ArtifactStore
from stages.train import checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def _worker(rank: int, world: int, port: int, workspace: str, out: str) -> None:
    as_torchrun_rank(rank, world, port)
    from stages.train import burnin, train

    digests: list[str] = []

    def record(self, model, step):  # the unwrapped model after each optimizer step
        digests.append(_digest(model))

    burnin.BurninObjective.after_step = record
    art = train(ArtifactStore(workspace), tiny_request(steps=3, batch_size=1, checkpoint_every=3))
    Path(out, f"rank{rank}.txt").write_text("\n".join([art.id, *digests]))


def test_ddp_two_processes_keep_weights_identical(tmp_path):
    root = tiny_synth(tmp_path / "synth")
    store = ArtifactStore(tmp_path / "runs")
    gt_masks_artifact(store, root)
    mp.spawn(
        _worker, args=(2, _free_port(), str(store.workspace), str(tmp_path)), nprocs=2, join=True
    )
    rank0 = (tmp_path / "rank0.txt").read_text().splitlines()
    rank1 = (tmp_path / "rank1.txt").read_text().splitlines()
    assert rank0[0] == rank1[0]  # both ranks return the same artifact
    assert len(rank0) == 1 + 3
    assert rank0[1:] == rank1[1:]  # gradients were averaged: weights equal after every step
    assert len(set(rank0[1:])) == 3  # and they did change
    art = store.get("synth", "burnin", rank0[0])
    assert art.is_complete and art.params["world_size"] == 2
    assert art.manifest["summary"]["world_size"] == 2
    assert _digest(checkpoint.model_from(checkpoint.final(art))) == rank0[-1]


@pytest.mark.slow
def test_torchrun_cli(tmp_path):
    """The documented multi-process launch: torchrun + `diod train` (gloo on CPU)."""
    root = tiny_synth(tmp_path / "synth")
    store = ArtifactStore(tmp_path / "runs")
    gt_masks_artifact(store, root)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        "-m",
        "diodcli.main",
        "--workspace",
        str(store.workspace),
        "train",
        "--stage",
        "burnin",
        "--dataset",
        "synth",
        "--steps",
        "2",
        "--batch-size",
        "1",
        *TINY_CLI_OPTIONS,
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    art = store.latest("synth", "burnin")
    assert art.params["world_size"] == 2
