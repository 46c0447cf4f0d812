"""The distillation stage end to end on a tiny synth dataset: artifact, EMA teacher, resume,
ablation ids, export of teacher and student, CLI."""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import as_torchrun_rank, gt_masks_artifact, tiny_request, tiny_synth

from stages.artifacts import ArtifactStore
from stages.errors import UserError
from stages.train import checkpoint


@pytest.fixture(scope="module")
def burned(tiny_masks):
    """A tiny dataset, its GT-moving masks and a 4-step burn-in on them."""
    from stages.train import train

    _root, store, _masks = tiny_masks
    return store, train(store, tiny_request(val_split=""))


def _config(**overrides):
    """The tiny distillation request; network and clip settings come from the burn-in."""
    request = tiny_request(
        "distill", **{"steps": 3, "checkpoint_every": 2, "val_split": ""} | overrides
    )
    inherited = {"num_slots", "encoder_width", "decoder_channels", "clip_length", "input_size"}
    given = {k: v for k, v in request.given.items() if k not in inherited - overrides.keys()}
    return replace(request, given=given)


TERMS = ("step", "loss", "mse", "motion_bce", "teacher_bce", "fg_bg", "candidates_per_frame")


def _losses(art) -> list[dict[str, float]]:
    """The logged loss terms per step (not the throughput columns)."""
    rows = csv.DictReader((art.path / "logs/train.csv").open())
    return [{k: float(r[k]) for k in TERMS} for r in rows]


def test_distill_run_ema_teacher_and_artifact(burned, monkeypatch):
    """Teacher = EMA of the student after every step, from the burn-in weights; it never
    has gradients; checkpoints hold both; the loss terms of eq. 5 are logged."""
    from stages.train.distill import DistillObjective, train_distill

    store, burnin = burned
    start = checkpoint.final(burnin)["model"]
    snapshots: list[dict[str, torch.Tensor]] = []
    original = DistillObjective.after_step

    def record(self, model, step):
        assert all(p.grad is None and not p.requires_grad for p in self.teacher.parameters())
        assert not self.teacher.module.training and model.training
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        original(self, model, step)

    monkeypatch.setattr(DistillObjective, "after_step", record)
    art = train_distill(store, _config(val_split="val"))
    monkeypatch.undo()

    assert art.is_complete and art.stage == "distill" and art.upstream == {"burnin": burnin.id}
    assert (
        art.params["config"]["distill"]["labels"]["connection"] == "one-to-many"
        and art.params["config"]["distill"]["ema"] == 0.996
    )
    state = checkpoint.final(art)
    assert state["step"] == 3 and set(state["extra"]) == {"teacher"}
    assert [s for s, _ in checkpoint.checkpoints(art.path)] == [2, 3]
    assert len(snapshots) == 3
    teacher = state["extra"]["teacher"]
    for name, value in teacher.items():
        expected = start[name].clone()
        for snap in snapshots:
            if expected.is_floating_point():
                expected = 0.996 * expected + 0.004 * snap[name]
            else:
                expected = snap[name].clone()
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6, msg=name)
    student = state["model"]
    assert any(not torch.equal(student[k], teacher[k]) for k in student)

    rows = _losses(art)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    for row in rows:
        parts = row["motion_bce"] + row["teacher_bce"] + row["fg_bg"] + row["mse"]
        assert row["loss"] == pytest.approx(parts, rel=1e-4)
    val = list(csv.DictReader((art.path / "logs/val.csv").open()))
    assert [int(r["step"]) for r in val] == [3] and "f1_50" in val[0]


def test_teacher_labels_drive_the_loss_and_ablations_change_it(burned):
    """A confident teacher yields candidates and kept masks; without motion masks L_s is 0."""
    from stages.distill.ema import EmaTeacher
    from stages.train.config import DistillSettings, LossConfig
    from stages.train.distill import DistillObjective

    _store, burnin = burned
    student = checkpoint.model_from(checkpoint.final(burnin))
    teacher = EmaTeacher(student, keep_rate=0.996)
    h, w = 8, 16
    batch = {
        "frames": torch.rand(1, 2, 3, 32, 64),
        "masks": torch.zeros(1, 2, 1, h, w, dtype=torch.bool),
        "valid": torch.ones(1, 2, 1, dtype=torch.bool),
    }
    batch["masks"][..., 2:6, 3:9] = True
    # a teacher whose slot 0 owns a confident box: one candidate per frame, mask kept
    maps = torch.zeros(2, 4, h, w)
    maps[:, -1] = 1.0
    maps[:, -1, 2:6, 3:9] = 0.0
    maps[:, 0, 2:6, 3:9] = 1.0

    class Fixed(torch.nn.Module):
        def forward(self, frames, reconstruct=True):
            out = student(frames, reconstruct=reconstruct)
            out.masks = maps.view(1, 2, 4, h, w)
            return out

    teacher.module = Fixed()
    full = DistillObjective(teacher=teacher, settings=DistillSettings(), losses=LossConfig())
    loss, terms = full.loss(student, batch, 0)
    assert terms["candidates_per_frame"] == 1 and terms["kept_masks_per_frame"] == 1
    assert terms["teacher_bce"] > 0 and terms["motion_bce"] > 0 and loss.requires_grad
    no_motion = DistillObjective(
        teacher=teacher, settings=DistillSettings(motion_masks=False), losses=LossConfig()
    )
    _, terms = no_motion.loss(student, batch, 0)
    assert terms["motion_bce"] == 0 and terms["teacher_bce"] > 0
    # the same step draws the same strong view: same loss
    again, _ = full.loss(student, batch, 0)
    assert again.item() == pytest.approx(loss.item())


def test_ablations_change_the_artifact_and_offline_keeps_the_labeler(burned):
    from stages.export import ExportConfig, export
    from stages.train.distill import train_distill

    store, burnin = burned
    one = dict(steps=1, checkpoint_every=1)
    base = train_distill(store, _config(**one))
    variants = [
        train_distill(store, _config(**one, motion_masks=False)),
        train_distill(store, _config(**one, connection="one-to-one")),
        train_distill(store, _config(**one, ema=0.99)),
        train_distill(store, _config(**one, threshold=0.8)),
    ]
    offline = train_distill(store, _config(**one, offline=True))
    ids = {a.id for a in [base, *variants, offline]}
    assert len(ids) == 6
    # runtime options do not change the artifact
    assert train_distill(store, _config(**one, log_every=5)).id == base.id
    state = checkpoint.final(offline)
    assert set(state["extra"]) == {"labeler"}
    burn = checkpoint.final(burnin)["model"]
    assert all(torch.equal(state["extra"]["labeler"][k], burn[k]) for k in burn)
    with pytest.raises(UserError, match="no 'teacher' weights"):
        export(store, ExportConfig(dataset="synth", model=offline.id, device="cpu"))
    student = export(
        store, ExportConfig(dataset="synth", model=offline.id, which="student", device="cpu")
    )
    assert student.upstream == {"distill": offline.id} and student.params["which"] == "student"


def test_export_teacher_and_student_of_a_distill_artifact(burned):
    from stages.export import ExportConfig, export
    from stages.train.distill import train_distill
    from stages.zarrstore import open_video

    store, _burnin = burned
    art = train_distill(store, _config())
    outputs = {}
    for which in ("teacher", "student"):
        pred = export(store, ExportConfig(dataset="synth", model=art.id, which=which, device="cpu"))
        assert pred.upstream == {"distill": art.id} and pred.params["which"] == which
        group = open_video(pred, "predictions.zarr", "val", "val-0000")
        outputs[which] = np.asarray(group["scores"])
    assert not np.array_equal(outputs["teacher"], outputs["student"])


def test_stopped_and_resumed_distill_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    from stages.train import train
    from stages.train.distill import DistillObjective, train_distill

    root = tiny_synth(tmp_path / "synth")
    runs = {}
    for name in ("whole", "resumed"):
        store = ArtifactStore(tmp_path / name)
        gt_masks_artifact(store, root)
        train(store, tiny_request(val_split="", steps=2))
        runs[name] = store
    # threshold 0: the barely trained teacher's regions are all pseudo-labels
    config = dict(steps=5, checkpoint_every=2, seed=4, threshold=0.0)
    whole = train_distill(runs["whole"], _config(**config))

    original = DistillObjective.after_step

    def stop(self, model, step):
        if step == 4:
            raise KeyboardInterrupt
        original(self, model, step)

    monkeypatch.setattr(DistillObjective, "after_step", stop)
    with pytest.raises(KeyboardInterrupt):
        train_distill(runs["resumed"], _config(**config))
    monkeypatch.undo()
    with pytest.raises(UserError, match="--resume"):
        train_distill(runs["resumed"], _config(**config))
    resumed = train_distill(runs["resumed"], _config(**config, resume=True))
    assert resumed.id == whole.id and resumed.manifest["resumed"]
    assert _losses(resumed) == _losses(whole)
    assert all(r["candidates_per_frame"] > 0 for r in _losses(whole))
    a, b = checkpoint.final(whole), checkpoint.final(resumed)
    for part in ("model", "teacher"):
        sa = a["model"] if part == "model" else a["extra"]["teacher"]
        sb = b["model"] if part == "model" else b["extra"]["teacher"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa), part


def test_bad_distill_options_are_user_errors(burned, tmp_path):
    from stages.train.distill import train_distill

    store, _burnin = burned
    with pytest.raises(UserError, match="num_slots 5: distillation keeps the burn-in"):
        train_distill(store, _config(num_slots=5))
    with pytest.raises(UserError, match="no burnin artifact 'ffff'"):
        train_distill(store, _config(burnin="ffff"))
    with pytest.raises(UserError, match="ema 1.5: expected a number >= 0 and <= 1"):
        train_distill(store, _config(ema=1.5))
    with pytest.raises(UserError, match="no complete burnin"):
        train_distill(ArtifactStore(tmp_path / "empty"), _config())


def _diod(*args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "diodcli.main", *args], capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_cli_distill_and_one_line_errors(burned):
    store, burnin = burned
    base = ["--workspace", str(store.workspace), "train", "--dataset", "synth"]
    run = ["--steps", "1", "--workers", "0", "--precision", "fp32", "--val-split", ""]
    code, out = _diod(*base, "--stage", "distill", "--burnin", burnin.id, "--offline", *run)
    assert code == 0, out
    assert "distill artifact: synth/distill/" in out
    code, out = _diod(*base, "--stage", "burnin", "--offline", *run)
    assert code == 2 and "--offline: only for --stage distill" in out and "Traceback" not in out
    code, out = _diod(*base, "--stage", "distill", "--masks", "abc", *run)
    assert code == 2 and "--masks" in out and "Traceback" not in out


def _ddp_worker(rank: int, world: int, port: int, workspace: str, out: str) -> None:
    import hashlib
    from pathlib import Path

    as_torchrun_rank(rank, world, port)
    from stages.train.distill import DistillObjective, train_distill

    digests: list[str] = []
    original = DistillObjective.after_step

    def record(self, model, step):
        original(self, model, step)
        h = hashlib.sha256()
        for t in self.teacher.module.state_dict().values():
            h.update(t.cpu().numpy().tobytes())
        digests.append(h.hexdigest())

    DistillObjective.after_step = record
    art = train_distill(
        ArtifactStore(workspace), _config(steps=3, batch_size=1, checkpoint_every=3, threshold=0.0)
    )
    Path(out, f"rank{rank}.txt").write_text("\n".join([art.id, *digests]))


def test_ddp_two_processes_keep_teachers_identical(tmp_path):
    """Each rank labels its own clips, yet the EMA teachers (parameters and BatchNorm
    buffers) stay bit-identical across ranks after every step."""
    import socket

    import torch.multiprocessing as mp

    from stages.train import train

    root = tiny_synth(tmp_path / "synth")
    store = ArtifactStore(tmp_path / "runs")
    gt_masks_artifact(store, root)
    train(store, tiny_request(val_split="", steps=2))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(store.workspace), str(tmp_path)), nprocs=2, join=True)
    rank0 = (tmp_path / "rank0.txt").read_text().splitlines()
    rank1 = (tmp_path / "rank1.txt").read_text().splitlines()
    assert rank0[0] == rank1[0] and len(rank0) == 1 + 3
    assert rank0[1:] == rank1[1:] and len(set(rank0[1:])) == 3
    art = store.get("synth", "distill", rank0[0])
    assert art.is_complete and art.params["world_size"] == 2
