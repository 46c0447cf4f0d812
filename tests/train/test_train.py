"""Training data, batching, schedule, and a tiny end-to-end burn-in run (CLI and library)."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest
import torch
from helpers import TINY_CLI_OPTIONS, gt_masks_artifact, tiny_request, tiny_synth

from stages.artifacts import ArtifactStore
from stages.errors import UserError
from stages.train import checkpoint
from stages.train.data import (
    FULL,
    Augment,
    ClipBatches,
    ClipDataset,
    collate,
    crop_resize_labels,
    crop_resize_rgb,
    draw_geometry,
    one_hot,
)
from stages.train.loop import to_device
from stages.train.schedule import lr_factor

WEAK = Augment()


def _dataset(tiny_masks, augment=WEAK, seed=0):
    root, _store, masks = tiny_masks
    return ClipDataset("synth", root, masks, "train", 3, (32, 64), (8, 16), augment, seed)


# -- data -----------------------------------------------------------------------------------
def test_an_epoch_of_videos_draws_one_window_per_video_per_epoch(tiny_masks):
    root, _store, masks = tiny_masks
    ds = ClipDataset("synth", root, masks, "train", 3, (32, 64), (8, 16), None, 0, epoch="videos")
    assert len(ds) == len(ds.videos) == 2
    starts = {
        epoch: [ds.clip(i, np.random.default_rng((0, epoch, i))).start for i in range(2)]
        for epoch in range(12)
    }
    assert all(0 <= s <= 6 - 3 for row in starts.values() for s in row)
    assert len({tuple(row) for row in starts.values()}) > 1  # a new window each epoch
    item = ds[(1, 5)]
    assert torch.equal(item["frames"], ds[(1, 5)]["frames"])  # seeded by (seed, epoch, item)


def test_clips_are_every_window_of_t_frames(tiny_masks):
    ds = _dataset(tiny_masks)
    assert len(ds) == 2 * (6 - 3 + 1)
    item = ds[(0, 0)]
    assert item["frames"].shape == (3, 3, 32, 64) and item["frames"].dtype == torch.uint8
    on_device = to_device(collate([item]), torch.device("cpu"))["frames"]
    assert on_device.dtype == torch.float32 and on_device.min() >= 0 and on_device.max() <= 1
    assert torch.equal(on_device[0], item["frames"].float() / 255)
    assert item["masks"].shape[:1] == (3,) and item["masks"].shape[2:] == (8, 16)
    assert item["masks"].dtype == torch.bool and item["valid"].shape == item["masks"].shape[:2]


def test_augmentation_is_deterministic_per_clip_and_epoch(tiny_masks):
    ds = _dataset(tiny_masks, Augment(crop_p=1.0, flip_p=0.5))
    a, b = ds[(3, 1)], ds[(3, 1)]
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["masks"], b["masks"])
    others = [ds[(3, e)]["frames"] for e in range(2, 6)]
    assert any(not torch.equal(a["frames"], o) for o in others)


def test_frames_and_masks_get_the_same_geometry(tiny_masks):
    """With augmentation, the masks are the un-augmented masks cropped/flipped like frames."""
    plain = _dataset(tiny_masks, None)
    aug = _dataset(tiny_masks, Augment(crop_p=1.0, flip_p=1.0))
    for index in range(len(aug)):
        rng = np.random.default_rng((0, 0, index))
        box, flip = draw_geometry(rng, Augment(crop_p=1.0, flip_p=1.0))
        assert flip and box != FULL
        clip = aug.clips[index]
        labels = np.asarray(aug._masks(clip.video)[clip.start : clip.start + 3])
        expected = crop_resize_labels(labels, box, (8, 16))[:, :, ::-1]
        got = aug[(index, 0)]
        ids = np.zeros((3, 8, 16), np.int64)
        for m in range(got["masks"].shape[1]):
            ids[got["masks"][:, m].numpy()] = m + 1
        assert np.array_equal(ids, expected)
        video = aug.videos[clip.video]
        frames = [
            crop_resize_rgb(plain._frames(video, clip.start)[t], box, (32, 64)) for t in range(3)
        ]
        frames = torch.from_numpy(np.stack(frames)[:, :, ::-1].copy()).permute(0, 3, 1, 2)
        assert torch.equal(got["frames"], frames)


def test_cropped_top_is_never_seen(tiny_masks):
    """crop_top: the clip is the frame below the cropped rows, frames and masks alike."""
    root, _store, masks = tiny_masks
    ds = ClipDataset("synth", root, masks, "train", 3, (16, 64), (4, 16), None, 0, crop_top=0.5)
    item = ds[(0, 0)]
    clip = ds.clips[0]
    video = ds.videos[clip.video]
    frame = ds._frames(video, clip.start)[0]
    expected = crop_resize_rgb(frame, (0.5, 0.0, 0.5, 1.0), (16, 64))
    assert torch.equal(item["frames"][0], torch.from_numpy(expected.copy()).permute(2, 0, 1))
    labels = np.asarray(ds._masks(clip.video)[clip.start : clip.start + 3])
    ids = np.zeros((3, 4, 16), np.int64)
    for m in range(item["masks"].shape[1]):
        ids[item["masks"][:, m].numpy()] = m + 1
    assert np.array_equal(ids, crop_resize_labels(labels, (0.5, 0.0, 0.5, 1.0), (4, 16)))


def test_crop_resize_labels_is_nearest_and_one_hot_marks_present_masks():
    labels = np.arange(16).reshape(1, 4, 4)
    assert np.array_equal(crop_resize_labels(labels, FULL, (2, 2)), [[[5, 7], [13, 15]]])
    assert np.array_equal(
        crop_resize_labels(labels, (0.5, 0.5, 0.5, 0.5), (2, 2)), [[[10, 11], [14, 15]]]
    )
    masks, valid = one_hot(np.array([[[0, 2], [2, 0]], [[1, 0], [0, 0]]]))
    assert masks.shape == (2, 2, 2, 2)
    assert valid.tolist() == [[False, True], [True, False]]


def test_collate_pads_masks_with_invalid_entries():
    def item(m: int) -> dict[str, torch.Tensor]:
        return {
            "frames": torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
            "masks": torch.ones(2, m, 4, 4, dtype=torch.bool),
            "valid": torch.ones(2, m, dtype=torch.bool),
        }

    batch = collate([item(1), item(3)])
    assert batch["frames"].shape == (2, 2, 3, 4, 4)
    assert batch["masks"].shape == (2, 2, 3, 4, 4)
    assert batch["valid"][0].tolist() == [[True, False, False]] * 2
    assert not batch["masks"][0, :, 1:].any()


def test_batches_of_a_resumed_run_are_the_uninterrupted_ones():
    full = list(ClipBatches(10, 3, seed=5, total_steps=7))
    assert len(full) == 7 and all(len(b) == 3 for b in full)
    assert list(ClipBatches(10, 3, seed=5, start_step=4, total_steps=7)) == full[4:]
    epochs = {e for b in full for _, e in b}
    assert epochs == {0, 1, 2}  # 3 steps per epoch
    assert sorted(i for b in full[:3] for i, _ in b) == sorted({i for b in full[:3] for i, _ in b})


def test_distributed_ranks_read_disjoint_shares():
    r0 = list(ClipBatches(12, 2, seed=1, rank=0, world=2, total_steps=3))
    r1 = list(ClipBatches(12, 2, seed=1, rank=1, world=2, total_steps=3))
    seen0 = {i for b in r0 for i, _ in b}
    seen1 = {i for b in r1 for i, _ in b}
    assert not seen0 & seen1 and len(seen0 | seen1) == 12
    with pytest.raises(UserError, match="--batch-size"):
        ClipBatches(3, 4, seed=0, total_steps=1)


def test_schedule_warmup_then_continuous_halving():
    assert lr_factor(0, 100, 1000) == 0.0
    assert lr_factor(50, 100, 1000) == pytest.approx(0.5 * 0.5**0.05)
    assert lr_factor(1000, 100, 1000) == pytest.approx(0.5)
    assert lr_factor(1500, 100, 1000) == pytest.approx(0.5**1.5)
    assert lr_factor(10, 0, 1000) == pytest.approx(0.5**0.01)


# -- the stage ------------------------------------------------------------------------------
def test_tiny_burnin_run_publishes_checkpoints_logs_and_validation(tiny_masks):
    from stages.train import train

    _root, store, masks = tiny_masks
    art = train(store, tiny_request())
    assert art.is_complete and art.stage == "burnin" and art.upstream == {"masks": masks.id}
    steps = [s for s, _ in checkpoint.checkpoints(art.path)]
    assert steps == [2, 4]  # every 2 steps, the last 2 kept
    state = checkpoint.final(art)
    assert state["step"] == 4 and state["config"]["model"]["num_slots"] == 4
    model = checkpoint.model_from(state)
    assert model.config.num_slots == 4
    rows = list(csv.DictReader((art.path / "logs/train.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert {"loss", "mse", "bce", "fg_bg", "lr", "clips_per_s", "frames_per_s"} <= set(rows[0])
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    val = list(csv.DictReader((art.path / "logs/val.csv").open()))
    assert [int(r["step"]) for r in val] == [4] and "fg_ari" in val[0]
    assert art.manifest["summary"]["validation"]["step"] == 4
    assert list((art.path / "logs/tensorboard").iterdir())
    # same inputs: the complete artifact is reused
    again = train(store, tiny_request())
    assert again.id == art.id and again.manifest["finished"] == art.manifest["finished"]


def test_parameters_that_change_the_result_change_the_artifact(tiny_masks):
    from stages.train import train

    _root, store, _masks = tiny_masks
    a = train(store, tiny_request(steps=1, checkpoint_every=1))
    b = train(store, tiny_request(steps=1, checkpoint_every=1, alpha=0.5))
    c = train(store, tiny_request(steps=1, checkpoint_every=1, log_every=5))
    assert a.id != b.id and a.id == c.id
    assert b.params["config"]["losses"]["alpha"] == 0.5


def test_bad_options_are_user_errors(tiny_masks):
    from stages.train import train
    from stages.train.config import resolve

    _root, store, _masks = tiny_masks
    with pytest.raises(UserError, match="input_size 30x64: both sides must be multiples of 4"):
        resolve("burnin", "synth", {"input_size": (30, 64)})
    with pytest.raises(UserError, match="exclusive"):
        resolve("burnin", "synth", {"steps": 2, "epochs": 2})
    with pytest.raises(UserError, match="preset: dataset 'folder' has no default preset"):
        resolve("burnin", "folder", {})
    with pytest.raises(UserError, match="no masks artifact 'ffff'"):
        train(store, tiny_request(masks="ffff"))
    with pytest.raises(UserError, match="clip length"):
        train(store, tiny_request(clip_length=9))


def _diod(*args: str) -> tuple[int, str]:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "diodcli.main", *args], capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_cli_burnin_run_and_one_line_errors(tiny_masks, tmp_path):
    root, store, masks = tiny_masks
    base = [
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
        "2",
        *TINY_CLI_OPTIONS,
        "--val-split",
        "",
    ]
    code, out = _diod(*base)
    assert code == 0, out
    assert "burn-in artifact: synth/burnin/" in out
    code, out = _diod(*base[:-2], "--size", "30x64")
    assert code == 2 and out.strip().splitlines()[-1].startswith("diod: error: --size 30x64")
    assert "Traceback" not in out
    code, out = _diod(
        "--workspace", str(tmp_path / "empty"), "train", "--stage", "burnin", "--dataset", "synth"
    )
    assert code == 2 and "no complete masks artifact" in out and "Traceback" not in out


def test_interrupted_run_needs_resume_or_force(tiny_masks, monkeypatch):
    from stages.train import burnin, train

    _root, store, _masks = tiny_masks

    def stop(self, model, step):
        if step == 3:
            raise KeyboardInterrupt

    config = tiny_request(steps=5, checkpoint_every=2, seed=7)
    monkeypatch.setattr(burnin.BurninObjective, "after_step", stop)
    with pytest.raises(KeyboardInterrupt):
        train(store, config)
    monkeypatch.undo()
    with pytest.raises(UserError, match="--resume"):
        train(store, config)
    art = train(store, tiny_request(steps=5, checkpoint_every=2, seed=7, force=True))
    assert art.is_complete and checkpoint.final(art)["step"] == 5


def test_size_auto_keeps_the_videos_aspect_at_the_presets_area(tiny_masks):
    from stages.frames import size_at_area
    from stages.train.runner import auto_size, resolve_request

    root, _store, _masks = tiny_masks
    request = tiny_request(input_size="auto")
    config = auto_size(request, resolve_request(request), root)
    assert config.data.input_size == size_at_area((32, 64), (96, 320)) == (124, 248)
    plain = resolve_request(tiny_request())
    assert auto_size(tiny_request(), plain, root) == plain


def test_dry_run_plans_the_authors_epochs_and_writes_nothing(tmp_path):
    """The full presets count an epoch as one random window per video (the authors' code):
    16 videos at batch 8 make 2 steps per epoch, 400 epochs 800 steps; every window per epoch
    (8-frame videos, T = 5: 4 windows each) would be 4x that."""
    import re

    root = tiny_synth(tmp_path / "synth", train_videos=16, val_videos=0, frames=8)
    store = ArtifactStore(tmp_path / "runs")
    gt_masks_artifact(store, root)
    base = ["--workspace", str(store.workspace), "train", "--stage", "burnin", "--dataset"]
    base += ["synth", "--preset", "tripd", "--dry-run"]
    for extra, steps in (([], 800), (["--epoch", "windows"], 3200)):
        code, out = _diod(*base, *extra)
        assert code == 0 and "dry run" in out, out
        assert f"400 epochs = {steps} steps of batch 8" in out, out
        last_lr = float(re.search(r"([0-9.e-]+) at the last step", out).group(1))
        assert 0 < last_lr < 5e-4
    assert store.list("synth", "burnin") == []


# -- DIOD*: a frozen DINOv2 encoder ---------------------------------------------------------
DINOV2_CLI = ["--encoder", "dinov2-vits14", "--size", "28x56"]  # 28: 14-px patches, 1/4 maps


def _vits14_file(path, official: bool) -> str:
    """A ViT-S/14 state dict of random tensors: the facebookresearch layout (timm's names plus
    the mask token) or timm's, as .pth."""
    from stages.model.dinov2 import _backbone

    torch.manual_seed(5)
    state = _backbone("dinov2-vits14").state_dict()
    if official:
        state["mask_token"] = torch.zeros(1, 384)
    torch.save(state, path)
    return str(path)


def _frozen_weights_left_out(art) -> None:
    """The checkpoint holds what trains: no encoder weights, no optimizer state for them."""
    from stages.model import DIOD, ModelConfig

    state = checkpoint.final(art)
    assert not any(k.startswith("encoder.") for k in state["model"])
    model = DIOD(ModelConfig.from_dict(state["model_config"]))
    trained = [p for p in model.parameters() if p.requires_grad]
    assert len(state["optimizer"]["param_groups"][0]["params"]) == len(trained)
    assert not any(p.requires_grad for p in model.encoder.parameters())


def test_cli_burnin_with_a_frozen_dinov2_encoder(tiny_masks, tmp_path):
    """`--encoder-weights none`: random weights, said loudly; a weights file: loaded, said
    so, recorded by path and sha256; a missing or foreign file: one line, exit 2."""
    import hashlib
    import re
    from pathlib import Path

    _root, store, _masks = tiny_masks
    base = ["--workspace", str(store.workspace), "train", "--stage", "burnin", "--dataset"]
    base += ["synth", "--steps", "2", "--batch-size", "2", *TINY_CLI_OPTIONS, *DINOV2_CLI]
    base += ["--val-split", ""]

    def artifact(out: str):
        found = re.search(r"burn-in artifact: synth/burnin/(\w+)", out)
        assert found, out
        return store.get("synth", "burnin", found.group(1))

    code, out = _diod(*base, "--encoder-weights", "none")
    assert code == 0, out
    assert "dinov2-vits14 has RANDOM weights (--encoder-weights none)" in out
    _frozen_weights_left_out(artifact(out))

    weights = _vits14_file(tmp_path / "dinov2_vits14_pretrain.pth", official=True)
    code, out = _diod(*base, "--encoder-weights", weights)
    assert code == 0, out
    assert f"loaded DINOv2 weights from {weights} (" in out and "RANDOM" not in out
    art = artifact(out)
    model = art.params["config"]["model"]
    assert model["encoder_weights"] == weights
    assert model["encoder_sha256"] == hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    _frozen_weights_left_out(art)

    code, out = _diod(*base, "--encoder-weights", str(tmp_path / "nowhere.pth"))
    assert code == 2 and "Traceback" not in out
    last = out.strip().splitlines()[-1]
    assert (
        last.startswith("diod: error: --encoder-weights ") and "nowhere.pth: no such file" in last
    )
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, foreign)
    code, out = _diod(*base, "--encoder-weights", str(foreign))
    assert code == 2 and "Traceback" not in out
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"diod: error: {foreign}: not dinov2-vits14 weights"), out


def test_dinov2_run_resumes_and_distils_from_its_weights_file(tiny_masks, tmp_path, monkeypatch):
    """A stopped DINOv2 run resumes to the uninterrupted result (the frozen weights come
    back from their file); distillation reads the same file."""
    from stages.train import burnin, train

    root, _store, _masks = tiny_masks
    weights = _vits14_file(tmp_path / "vits14.pth", official=False)
    config = dict(steps=4, checkpoint_every=2, seed=2, input_size=(28, 56), clip_length=2)
    config.update(encoder="dinov2-vits14", encoder_weights=weights)
    runs = []

    def stop(self, model, step):
        if step == 3:  # after the step-2 checkpoint
            raise KeyboardInterrupt

    for name in ("whole", "resumed"):
        store = ArtifactStore(tmp_path / name)
        gt_masks_artifact(store, root)
        if name == "resumed":
            monkeypatch.setattr(burnin.BurninObjective, "after_step", stop)
            with pytest.raises(KeyboardInterrupt):
                train(store, tiny_request(**config))
            monkeypatch.undo()
        runs.append(train(store, tiny_request(**config, resume=True)))
    whole, resumed = (checkpoint.final(a)["model"] for a in runs)
    assert runs[0].id == runs[1].id and runs[1].manifest["resumed"]
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    distilled = train(store, tiny_request("distill", **{**config, "steps": 1}))
    state = checkpoint.final(distilled)
    assert state["config"]["model"]["encoder_weights"] == weights
    assert not any(k.startswith("encoder.") for k in state["extra"]["teacher"])
