"""No orphans: after `kill -9` of a stage, every process it started (data loaders,
masks workers, the resource tracker behind them) exits on its own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY_CLI_OPTIONS, gt_masks_artifact, write_gt_flow_artifact

from stages.artifacts import ArtifactStore
from stages.synthgen import SynthConfig, generate

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live (not zombie) process."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            out[int(stat.parent.name)] = int(fields[1])
    return out


def descendants(pid: int) -> set[int]:
    parents = _parents()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def kill_and_watch(args: list[str], workers: int, timeout: float = 120.0) -> set[int]:
    """Run ``diod ARGS``, SIGKILL it once it has at least ``workers`` child processes, and
    return those still alive 20 s later (killing them, so that a failure leaks nothing)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "diodcli.main", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    children: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(children) < workers:
            assert proc.poll() is None, f"ended before starting its workers: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no workers started"
            time.sleep(0.05)
            children = descendants(proc.pid)
        time.sleep(0.5)  # let the workers get to work
        children |= descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        alive = set(children)
        end = time.monotonic() + 20
        while alive and time.monotonic() < end:
            time.sleep(0.2)
            alive &= set(_parents())
        return alive
    finally:
        for pid in descendants(proc.pid) | children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A synth dataset long enough to keep each stage busy for seconds, its GT flow and GT
    moving masks as artifacts."""
    base = tmp_path_factory.mktemp("orphans")
    config = SynthConfig(seed=5, train_videos=16, val_videos=0, frames=16, height=64, width=160)
    root = generate(base / "synth", config, workers=1)
    store = ArtifactStore(base / "runs")
    write_gt_flow_artifact(store, "synth", root, backward=True)
    gt_masks_artifact(store, root)
    return root, store


def test_killed_masks_leaves_no_worker(workspace):
    root, store = workspace
    args = ["--workspace", str(store.workspace), "masks", "--dataset", "synth", "--workers", "2"]
    assert not kill_and_watch(args, workers=2)


def test_killed_flow_leaves_no_loader(workspace):
    root, store = workspace
    args = ["--workspace", str(store.workspace / "flow"), "flow", "--dataset", "synth"]
    args += ["--root", str(root), "--model", "opencv-farneback", "--workers", "2"]
    assert not kill_and_watch(args, workers=3)  # its 2 loaders and the resource tracker


def test_killed_training_leaves_no_loader(workspace):
    root, store = workspace
    args = ["--workspace", str(store.workspace), "train", "--stage", "burnin"]
    args += ["--dataset", "synth", "--steps", "500", "--val-split", "", *TINY_CLI_OPTIONS]
    args += ["--workers", "2"]  # after TINY_CLI_OPTIONS' --workers 0: the last one counts
    assert not kill_and_watch(args, workers=3)
