"""Resume-equivalence: a run stopped after N steps and resumed reproduces, on CPU with the
same seed, the losses and weights of the uninterrupted run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import TINY_CLI_OPTIONS, gt_masks_artifact, tiny_request, tiny_synth

from stages.artifacts import ArtifactStore
from stages.train import checkpoint


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tiny_synth(tmp_path_factory.mktemp("resume") / "synth")


def _losses(art) -> list[tuple[int, float, float, float, float]]:
    rows = csv.DictReader((art.path / "logs/train.csv").open())
    return [
        (int(r["step"]), float(r["loss"]), float(r["mse"]), float(r["bce"]), float(r["fg_bg"]))
        for r in rows
    ]


def _same_weights(a, b) -> bool:
    wa, wb = checkpoint.final(a)["model"], checkpoint.final(b)["model"]
    return all(torch.equal(wa[k], wb[k]) for k in wa)


def test_stopped_and_resumed_run_equals_the_uninterrupted_run(root, tmp_path, monkeypatch):
    from stages.train import burnin, train

    config = dict(steps=6, checkpoint_every=2, seed=3)
    store_a = ArtifactStore(tmp_path / "a")
    gt_masks_artifact(store_a, root)
    whole = train(store_a, tiny_request(**config))

    store_b = ArtifactStore(tmp_path / "b")
    gt_masks_artifact(store_b, root)

    def stop(self, model, step):
        if step == 5:  # after the step-4 checkpoint, before step 5 is logged
            raise KeyboardInterrupt

    monkeypatch.setattr(burnin.BurninObjective, "after_step", stop)
    with pytest.raises(KeyboardInterrupt):
        train(store_b, tiny_request(**config))
    monkeypatch.undo()
    # the resumed part loads clips in a worker process: data order and augmentation do not
    # depend on which process reads them
    resumed = train(store_b, tiny_request(**config, resume=True, num_workers=1))
    assert resumed.id == whole.id
    assert resumed.manifest["resumed"]
    assert _losses(resumed) == _losses(whole)
    assert [s for s, *_ in _losses(whole)] == [1, 2, 3, 4, 5, 6]
    assert _same_weights(whole, resumed)


def test_killed_cli_run_resumes_to_the_same_result(root, tmp_path):
    """SIGKILL at an arbitrary point (after the first checkpoint), then `--resume`."""
    args = [
        "train",
        "--stage",
        "burnin",
        "--dataset",
        "synth",
        "--steps",
        "24",
        "--checkpoint-every",
        "3",
        "--batch-size",
        "2",
        *TINY_CLI_OPTIONS,
        "--val-split",
        "",
        "--seed",
        "5",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def diod(workspace, *extra, wait=True):
        cmd = [sys.executable, "-m", "diodcli.main", "--workspace", str(workspace), *args, *extra]
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        if wait:
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, out
        return proc

    for name in ("whole", "killed"):
        gt_masks_artifact(ArtifactStore(tmp_path / name), root)
    diod(tmp_path / "whole")
    proc = diod(tmp_path / "killed", wait=False)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "killed").glob("synth/burnin/*/checkpoints/step_00000003.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, (
            "run ended before its first checkpoint"
        )
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = ArtifactStore(tmp_path / "killed").list("synth", "burnin")[0]
    if killed.is_complete:
        pytest.skip("the run finished before it could be killed (machine too fast for this test)")
    assert killed.live_status() == "interrupted"
    diod(tmp_path / "killed", "--resume")
    whole = ArtifactStore(tmp_path / "whole").latest("synth", "burnin")
    resumed = ArtifactStore(tmp_path / "killed").latest("synth", "burnin")
    assert resumed.id == whole.id
    assert _losses(resumed) == _losses(whole)
    assert _same_weights(whole, resumed)
