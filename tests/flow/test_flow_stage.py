"""The flow stage end to end: artifact format, ptlflow with a checkpoint, resume after SIGKILL,
shards as processes, unreadable frames, synth EPE, the CLI and `diod viz flow`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from helpers import run_cli

from stages.artifacts import COMPLETE, FAILED, RUNNING, Artifact, ArtifactStore
from stages.datasets import open_dataset
from stages.datasets.imageio import write_png
from stages.errors import UserError
from stages.flow import FlowConfig, compute_flow, finalize_flow
from stages.flow.stage import shard_from_env
from stages.zarrstore import open_video, video_names

REPO = Path(__file__).resolve().parents[1]
DIOD = [sys.executable, "-m", "diodcli.main"]
ATTRS = {
    "model", "checkpoint", "checkpoint_sha256", "iters", "height", "width", "source_height",
    "source_width", "pixel_scale", "channel_order", "frame_names", "split",
}  # fmt: skip


def make_dataset(
    root: Path, videos: dict[str, int], frames: int = 5, h: int = 64, w: int = 96
) -> Path:
    """`folder` layout; video k of a split shows a photograph sliding by (-3(k%4+1), -2) px/frame."""
    img = skimage.data.astronaut()
    for split, n in videos.items():
        for k in range(n):
            d = root / split / f"{split}-{k:02d}" / "rgb"
            d.mkdir(parents=True)
            for t in range(frames):
                y, x = 100 + 2 * t, 20 + 3 * (k % 4 + 1) * t
                write_png(d / f"{t:06d}.png", np.ascontiguousarray(img[y : y + h, x : x + w]))
    return root


def flows(art: Artifact, name: str = "forward") -> dict[str, np.ndarray]:
    return {
        f"{s}/{v}": open_video(art, "flow.zarr", s, v)[name][:]
        for s in art.params["splits"]
        for v in video_names(art, "flow.zarr", s)
    }


def test_artifact_format_resize_and_reuse(tmp_path):
    root = make_dataset(tmp_path / "ds", {"train": 2, "val": 1})
    one = root / "val" / "val-01" / "rgb"  # a one-frame video: no pairs, still a video
    one.mkdir(parents=True)
    write_png(one / "000000.png", np.zeros((64, 96, 3), np.uint8))
    store = ArtifactStore(tmp_path / "ws")
    config = FlowConfig("folder", root, model="opencv-dis", workers=1, batch_size=3)
    art = compute_flow(store, config)
    assert art.status == COMPLETE and art.stage == "flow"
    assert art.params["root"] == str(root.resolve()) and art.params["splits"] == ["train", "val"]
    assert art.params["model"] == "opencv-dis" and art.params["backward"] is True
    assert art.manifest["summary"]["videos"] == 4 and art.manifest["summary"]["pairs"] == 12
    group = open_video(art, "flow.zarr", "train", "train-01")
    assert set(group.attrs) >= ATTRS
    assert group.attrs["pixel_scale"] == [1.0, 1.0] and group.attrs["channel_order"] == "dx,dy"
    assert group.attrs["frame_names"] == [f"{t:06d}" for t in range(5)]
    assert group.attrs["split"] == "train" and group.attrs["iters"] is None
    forward, backward = group["forward"][:], group["backward"][:]
    assert forward.shape == backward.shape == (4, 2, 64, 96) and forward.dtype == np.float16
    inner = forward[:, :, 8:-8, 8:-8].astype(np.float32)
    assert np.allclose(np.median(inner, axis=(0, 2, 3)), [-6.0, -2.0], atol=0.25)
    assert np.allclose(np.median(backward[:, :, 8:-8, 8:-8], axis=(0, 2, 3)), [6.0, 2.0], atol=0.25)
    assert open_video(art, "flow.zarr", "val", "val-01")["forward"].shape == (0, 2, 64, 96)

    again = compute_flow(store, config)  # same request: reused, nothing recomputed
    assert again.id == art.id and again.manifest["finished"] == art.manifest["finished"]

    half = compute_flow(
        store, FlowConfig("folder", root, model="opencv-dis", size=(32, 48), backward=False)
    )
    assert half.id != art.id and half.params["size"] == [32, 48]
    group = open_video(half, "flow.zarr", "train", "train-00")
    assert group.attrs["pixel_scale"] == [2.0, 2.0] and (
        group.attrs["height"],
        group.attrs["width"],
    ) == (32, 48)
    assert (group.attrs["source_height"], group.attrs["source_width"]) == (64, 96)
    assert "backward" not in group and group["forward"].shape == (4, 2, 32, 48)
    inner = group["forward"][:, :, 4:-4, 4:-4].astype(np.float32)
    assert np.allclose(np.median(inner, axis=(0, 2, 3)), [-1.5, -1.0], atol=0.25)


def test_ptlflow_stage_with_saved_checkpoint_batched_equals_unbatched(tmp_path):
    from stages.flow.backends import make_backend

    root = make_dataset(tmp_path / "ds", {"train": 2}, frames=3)
    trained = make_backend("raft_small", None, device="cpu", precision="fp32", iters=2)
    torch.manual_seed(7)
    for p in trained.model.parameters():
        p.data += torch.randn_like(p) * 0.05
    ckpt = tmp_path / "raft_small.ckpt"
    torch.save({"state_dict": trained.model.state_dict()}, ckpt)
    common = dict(model="raft_small", ckpt=str(ckpt), iters=2, device="cpu", workers=0)
    batched = compute_flow(
        ArtifactStore(tmp_path / "a"), FlowConfig("folder", root, batch_size=4, **common)
    )
    single = compute_flow(
        ArtifactStore(tmp_path / "b"), FlowConfig("folder", root, batch_size=1, **common)
    )
    assert batched.id == single.id  # batch size does not change the artifact
    attrs = dict(open_video(batched, "flow.zarr", "train", "train-00").attrs)
    assert set(attrs) >= ATTRS
    assert attrs["model"] == "raft_small" and attrs["iters"] == 2 and attrs["precision"] == "fp32"
    assert attrs["checkpoint"] == str(ckpt.resolve())
    assert attrs["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert batched.params["checkpoint_sha256"] == attrs["checkpoint_sha256"]
    frames = torch.from_numpy(
        np.stack(
            [
                np.asarray(skimage.io.imread(p))
                for p in sorted((root / "train" / "train-00" / "rgb").iterdir())
            ]
        )
    )
    direct = trained.predict(frames[:-1], frames[1:]).numpy()
    for name in ("forward", "backward"):
        a, b = flows(batched, name), flows(single, name)
        assert a.keys() == b.keys() == {"train/train-00", "train/train-01"}
        for key in a:
            assert a[key].shape == (2, 2, 64, 96) and a[key].dtype == np.float16
            scale = float(np.abs(a[key]).max()) + 1e-3
            assert np.allclose(a[key], b[key], atol=2e-3 * scale)
    assert np.allclose(
        flows(batched)["train/train-00"], direct, atol=2e-3 * (np.abs(direct).max() + 1e-3)
    )


def _popen(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for var in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(var, None)
    return subprocess.Popen(
        [*DIOD, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs
    )


def test_killed_run_resumes_without_recomputing_finished_videos(tmp_path):
    root = make_dataset(tmp_path / "ds", {"train": 24}, frames=8, h=160, w=240)
    ws = tmp_path / "ws"
    args = ["--workspace", str(ws), "-q", "flow", "--dataset", "folder", "--root", str(root)]
    args += ["--model", "opencv-farneback", "--workers", "0", "--batch-size", "2"]
    proc = _popen(args)
    split_dir = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(ws.glob("folder/flow/*/flow.zarr/train"))
        if found and len([p for p in found[0].iterdir() if (p / "zarr.json").exists()]) >= 3:
            split_dir = found[0]
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert split_dir is not None, proc.stderr.read().decode()
    before = {
        p.name: (p / "zarr.json").stat().st_mtime_ns
        for p in split_dir.iterdir()
        if (p / "zarr.json").exists()
    }
    assert 3 <= len(before) < 24, "the run finished before it could be killed"
    art = Artifact.load(split_dir.parents[1])
    assert art.status == RUNNING and art.live_status() == "interrupted"
    with pytest.raises(UserError, match="no complete flow"):
        ArtifactStore(ws).latest("folder", "flow")

    resumed = compute_flow(
        ArtifactStore(ws), FlowConfig("folder", root, model="opencv-farneback", workers=0)
    )
    assert resumed.id == art.id and resumed.status == COMPLETE
    assert len(video_names(resumed, "flow.zarr", "train")) == 24
    progress = resumed.manifest["progress"]
    for name, mtime in before.items():  # untouched, and computed by the killed process
        assert (split_dir / name / "zarr.json").stat().st_mtime_ns == mtime
    # a video is recorded right after it is published: the kill may fall in between, once
    recorders = [progress.get(f"train/{name}", {}).get("pid") for name in before]
    assert set(recorders) <= {proc.pid, None} and recorders.count(None) <= 1
    redone = {k for k, v in progress.items() if v["pid"] == os.getpid()}
    assert redone == {f"train/{n}" for n in video_names(resumed, "flow.zarr", "train")} - {
        f"train/{n}" for n in before
    }
    assert not (resumed.path / ".staging").exists()


def test_two_shard_processes_make_the_same_artifact_as_one(tmp_path):
    root = make_dataset(tmp_path / "ds", {"train": 3, "val": 2}, frames=4)
    common = [
        "flow",
        "--dataset",
        "folder",
        "--root",
        str(root),
        "--model",
        "opencv-dis",
        "--workers",
        "0",
    ]
    procs = [
        _popen(["--workspace", str(tmp_path / "sharded"), *common, "--shard", f"{i}/2"])
        for i in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    sharded = ArtifactStore(tmp_path / "sharded").latest("folder", "flow")
    single = compute_flow(
        ArtifactStore(tmp_path / "single"),
        FlowConfig("folder", root, model="opencv-dis", workers=0),
    )
    assert sharded.id == single.id and sharded.status == COMPLETE
    pids = {v["pid"] for v in sharded.manifest["progress"].values()}
    assert pids == {p.pid for p in procs}  # both processes did part of the work
    for name in ("forward", "backward"):
        a, b = flows(sharded, name), flows(single, name)
        assert a.keys() == b.keys() and len(a) == 5
        assert all(np.array_equal(a[k], b[k]) for k in a)
    for key in flows(single):
        split, video = key.split("/")
        assert dict(open_video(sharded, "flow.zarr", split, video).attrs) == dict(
            open_video(single, "flow.zarr", split, video).attrs
        )
    for field in ("videos", "pairs", "skipped"):
        assert sharded.manifest["summary"][field] == single.manifest["summary"][field]


def test_finalize_and_shard_rules(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "ds", {"train": 3}, frames=3)
    store = ArtifactStore(tmp_path / "ws")
    base = dict(dataset="folder", root=root, model="opencv-dis", workers=0)
    with pytest.raises(UserError, match="--finalize: no flow artifact"):
        finalize_flow(store, FlowConfig(**base))
    first = compute_flow(store, FlowConfig(**base, shard=(0, 2)))
    assert first.status == RUNNING and video_names(first, "flow.zarr", "train") == [
        "train-00",
        "train-02",
    ]
    with pytest.raises(UserError, match=r"lacks 1 of 3 videos \(first: train/train-01\)"):
        finalize_flow(store, FlowConfig(**base))
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    assert shard_from_env() == (1, 2)
    done = compute_flow(store, FlowConfig(**base))  # shard 1/2 from SLURM's variables
    assert done.id == first.id and done.status == COMPLETE
    assert finalize_flow(store, FlowConfig(**base)).status == COMPLETE
    with pytest.raises(UserError, match="--force with --shard 1/2"):
        compute_flow(store, FlowConfig(**base, force=True))
    assert shard_from_env({"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4)
    assert shard_from_env({}) == (0, 1)
    with pytest.raises(UserError, match="RANK/WORLD_SIZE 4/4"):
        shard_from_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_unreadable_frame_fails_naming_it_or_is_skipped(tmp_path):
    root = make_dataset(tmp_path / "ds", {"train": 3}, frames=4)
    bad = root / "train" / "train-01" / "rgb" / "000002.png"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    store = ArtifactStore(tmp_path / "ws")
    config = FlowConfig("folder", root, model="opencv-dis", workers=1, batch_size=2)
    with pytest.raises(UserError, match=str(bad)) as exc:
        compute_flow(store, config)
    assert "--skip-bad" in str(exc.value)
    (art,) = store.list("folder", "flow")
    assert art.status == FAILED and str(bad) in art.manifest["error"]
    assert "train-01" not in video_names(art, "flow.zarr", "train")  # nothing half-written
    with pytest.raises(UserError, match="no complete flow"):
        store.latest("folder", "flow")

    skipped = compute_flow(
        store, FlowConfig("folder", root, model="opencv-dis", workers=1, skip_bad=True)
    )
    assert skipped.id == art.id and skipped.status == COMPLETE
    assert video_names(skipped, "flow.zarr", "train") == ["train-00", "train-02"]
    record = skipped.manifest["progress"]["train/train-01"]
    assert record["skipped"] is True and str(bad) in record["error"]
    assert skipped.manifest["summary"]["skipped"] == ["train/train-01"]
    assert skipped.manifest["summary"]["videos"] == 2


def test_cli_errors_are_one_line(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", {"train": 1}, frames=2)
    base = ["--workspace", str(tmp_path / "ws"), "flow", "--dataset", "folder", "--root", str(root)]
    code, out, err = run_cli([*base, "--model", "raft_smal"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--model raft_smal" in err and "opencv-dis" in err and "raft_small" in err
    for extra, text in (
        (["--shard", "2/2"], "--shard 2/2"),
        (["--shard", "x"], "--shard x: expected i/n"),
        (["--size", "0x5"], "--size 0x5"),
        (["--model", "opencv-dis", "--split", "nope"], "no videos in split 'nope'"),
    ):
        code, _, err = run_cli([*base, *extra], capsys)
        assert code == 2 and err.count("\n") == 1 and text in err, err


def test_cli_runs_reports_and_renders(tmp_path, capsys):
    from stages.synthgen import SynthConfig, generate

    root = generate(tmp_path / "synth", SynthConfig(seed=3, train_videos=0, val_videos=2, frames=5))
    ws = ["--workspace", str(tmp_path / "ws")]
    config = tmp_path / "flow.toml"
    config.write_text('[flow]\nmodel = "opencv-dis"\nbatch-size = 4\n')
    code, out, _ = run_cli(
        [*ws, "--config", str(config), "flow", "--dataset", "synth", "--root", str(root)], capsys
    )
    assert code == 0 and "2 videos, 8 pairs" in out and "EPE" in out, out
    art = ArtifactStore(tmp_path / "ws").latest("synth", "flow")
    assert art.params["model"] == "opencv-dis"

    code, out, _ = run_cli(
        [*ws, "viz", "flow", "--dataset", "synth", "--video", "val-0001"], capsys
    )
    assert code == 0, out
    pngs = sorted((art.path / "viz" / "forward" / "val" / "val-0001").glob("*.png"))
    assert [p.stem for p in pngs] == ["000000", "000001", "000002", "000003"]
    image = skimage.io.imread(pngs[0])
    assert image.shape == (96, 640, 3)  # frame | flow, side by side
    out_dir = tmp_path / "mp4"
    code, _, _ = run_cli(
        [*ws, "viz", "flow", "--dataset", "synth", "--mp4", "--backward", "--out", str(out_dir)],
        capsys,
    )
    assert code == 0 and sorted(p.name for p in (out_dir / "val").iterdir()) == [
        "val-0000.mp4",
        "val-0001.mp4",
    ]
    code, _, err = run_cli([*ws, "viz", "flow", "--dataset", "synth", "--video", "nope"], capsys)
    assert code == 2 and "--video nope" in err


def test_dis_on_synth_is_far_below_zero_flow(tmp_path):
    """The acceptance check: DIS end-point error vs the synthetic GT flow, per video."""
    from stages.synthgen import SynthConfig, generate

    root = generate(
        tmp_path / "synth", SynthConfig(seed=11, train_videos=0, val_videos=3, frames=6)
    )
    store = ArtifactStore(tmp_path / "ws")
    art = compute_flow(store, FlowConfig("synth", root, model="opencv-dis", backward=False))
    report = art.manifest["summary"]["epe"]
    assert set(report["videos"]) == {"val/val-0000", "val/val-0001", "val/val-0002"}
    for video in report["videos"].values():
        assert video["pairs"] == 5 and video["zero_flow_epe"] > 1.0
        assert video["epe"] < 0.35 * video["zero_flow_epe"]
    assert report["epe"] < 0.3 * report["zero_flow_epe"]
    print(json.dumps(report, indent=1))


def test_ground_truth_model_copies_both_directions_and_resizes(tmp_path, capsys):
    """``--model gt``: the dataset's own flow, both directions, float16, at ``--size`` scaled
    as estimated flow would be; one error line where the dataset lacks what is asked."""
    from stages.flow.epe import resize_flow
    from stages.synthgen import SynthConfig, generate

    root = generate(tmp_path / "synth", SynthConfig(seed=5, train_videos=1, val_videos=1, frames=4))
    ds = open_dataset("synth", root)
    store = ArtifactStore(tmp_path / "ws")
    art = compute_flow(store, FlowConfig("synth", root, model="gt", ckpt=None))
    assert art.params["model"] == "gt" and art.manifest["summary"]["epe"]["epe"] < 1e-3
    for name, read in (("forward", ds.gt_flow), ("backward", ds.gt_backward_flow)):
        for key, stored in flows(art, name).items():
            assert stored.dtype == np.float16
            assert np.array_equal(stored, read(ds.video(*key.split("/"))).astype(np.float16))
    half = compute_flow(store, FlowConfig("synth", root, model="gt", ckpt=None, size=(48, 160)))
    video = ds.video("val", "val-0000")
    expected = resize_flow(ds.gt_backward_flow(video), (48, 160)).astype(np.float16)
    assert np.array_equal(flows(half, "backward")["val/val-0000"], expected)
    assert open_video(half, "flow.zarr", "val", "val-0000").attrs["pixel_scale"] == [2.0, 2.0]

    for flow_file in root.glob("*/*/flow.npz"):  # a set made before backward flow was rendered
        with np.load(flow_file) as data:
            np.savez(flow_file, forward=data["forward"])
    base = ["--workspace", str(tmp_path / "ws2"), "flow", "--dataset", "synth"]
    code, _, err = run_cli([*base, "--root", str(root), "--model", "gt"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--no-backward" in err, err
    code, _, _ = run_cli([*base, "--root", str(root), "--model", "gt", "--no-backward"], capsys)
    assert code == 0
    code, _, err = run_cli([*base, "--root", str(root), "--model", "gt", "--iters", "2"], capsys)
    assert code == 2 and "--iters: gt" in err
    folder = make_dataset(tmp_path / "folder", {"train": 1}, frames=2)
    code, _, err = run_cli([*base[:-1], "folder", "--root", str(folder), "--model", "gt"], capsys)
    assert code == 2 and err.count("\n") == 1 and "no ground-truth flow" in err, err
