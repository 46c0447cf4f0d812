"""The synthetic dataset generator: determinism, layout, geometry of the GT flow, CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import round_trip_errors

from stages.datasets import open_dataset
from stages.errors import UserError
from stages.synthgen import SynthConfig, generate
from stages.synthgen import dataset as dataset_module
from stages.synthgen.textures import PHOTOS, photo

REPO = Path(__file__).resolve().parents[1]
TINY = SynthConfig(train_videos=2, val_videos=1, frames=4, height=48, width=160)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "data", TINY, workers=1)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """Noise-free, so photometric checks measure geometry only."""
    config = SynthConfig(train_videos=3, val_videos=0, frames=4, height=48, width=160, noise_std=0)
    return generate(tmp_path_factory.mktemp("synth") / "clean", config, workers=1)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _videos(root: Path):
    ds = open_dataset("synth", root)
    return ds, [v for split in ds.splits() for v in ds.videos(split)]


def test_photos_ship_with_scikit_image():
    for name in PHOTOS:
        img = photo(name)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.float32, name
        assert img.min() >= 0 and img.max() <= 1 and img.std() > 0.02, name


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    again = generate(tmp_path / "again", TINY, workers=2)  # process pool, same bytes
    assert _files(again) == _files(tiny)
    other = _files(generate(tmp_path / "other", SynthConfig(**{**TINY.__dict__, "seed": 1})))
    reference = _files(tiny)
    assert other.keys() == reference.keys()
    differing = [k for k in reference if k.endswith(".png") and reference[k] != other[k]]
    assert len(differing) == sum(k.endswith(".png") for k in reference)


def test_video_independent_of_video_count(tiny, tmp_path):
    fewer = generate(tmp_path / "fewer", SynthConfig(**{**TINY.__dict__, "train_videos": 1}))
    for path in (fewer / "train" / "train-0000").rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (tiny / path.relative_to(fewer)).read_bytes()


def test_layout_readable_by_both_adapters(tiny):
    summary = json.loads((tiny / "synth.json").read_text())
    assert summary["config"] == TINY.to_json()
    folder = open_dataset("folder", tiny)
    assert folder.splits() == ["train", "val"]
    ds, videos = _videos(tiny)
    names = [v.name for v in videos]
    assert names == ["train-0000", "train-0001", "val-0000"]
    for video in videos:
        assert len(video) == TINY.frames
        for frame in ds.iter_frames(video):
            assert frame.shape == (48, 160, 3) and frame.dtype == np.uint8
        raw = cv2.imread(str(video.instances[0]), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint16 and raw.shape == (48, 160)
        meta = ds.meta(video)
        moving, static = set(meta["moving_ids"]), set(meta["static_ids"])
        ids = {o["id"] for o in meta["objects"]}
        assert moving | static == ids and not moving & static
        assert moving and len(static) >= math.ceil(len(ids) / 3)
        assert ds.moving_ids(video) == moving
        assert {o["id"] for o in meta["objects"] if o["moving"]} == moving
        present = set().union(*(np.unique(ds.instances(video, i)) for i in range(len(video))))
        assert present - {0} <= ids and len(present - {0}) >= len(ids) - 1
        assert {"focal_px", "yaw_deg", "position_m", "cy"} <= set(meta["camera"])
        flow = ds.gt_flow(video)
        assert flow.shape == (TINY.frames - 1, 2, 48, 160) and flow.dtype == np.float32
        assert np.isfinite(flow).all()
        families = {o["family"] for o in meta["objects"]}
        assert families <= set(TINY.families)


def _warp_back(frame_next: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(frame_next, xs + flow[0], ys + flow[1], cv2.INTER_LINEAR)


def _photometric_error(frame, frame_next, flow, where) -> float:
    return float(np.abs(_warp_back(frame_next, flow) - frame)[where].mean())


def test_gt_flow_explains_the_frames(clean):
    """Warping frame t+1 back with the GT flow gives frame t where the surface stays visible,
    on objects (moving ones included) as on the background, and better than any nearby flow
    (scaled by 10%, shifted by a third of a pixel): the flow is the geometry, not a guess."""
    ds, videos = _videos(clean)
    for video in videos:
        moving = list(ds.moving_ids(video))
        frames = [f.astype(np.float32) for f in ds.iter_frames(video)]
        flow = ds.gt_flow(video)
        h, w = flow.shape[2:]
        ys, xs = np.mgrid[0:h, 0:w]
        shift = np.zeros_like(flow[0])
        shift[0] = 1 / 3
        for t, f in enumerate(flow):
            ids = ds.instances(video, t)
            tx, ty = xs + f[0], ys + f[1]
            inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
            # the same surface is seen there next frame (bilinear ids change at id edges)
            ids_next = ds.instances(video, t + 1).astype(np.float32)
            visible = inside & (_warp_back(ids_next, f) == ids)
            assert visible.mean() > 0.6
            pair = (frames[t], frames[t + 1])
            exact = _photometric_error(*pair, f, visible)
            assert exact < 0.3 * _photometric_error(*pair, 0 * f, visible), (video.name, t)
            for wrong in (0.9 * f, 1.1 * f, f + shift, f + shift[::-1]):
                assert exact < _photometric_error(*pair, wrong, visible), (video.name, t)
            on_moving = visible & np.isin(ids, moving)
            if on_moving.sum() >= 20:
                still = _photometric_error(*pair, 0 * f, on_moving)
                assert _photometric_error(*pair, f, on_moving) < 0.3 * still, (video.name, t)


def test_camera_motion_and_parallax(tiny):
    """The background moves, and the ground (near) expands faster than the backdrop (far)."""
    ds, videos = _videos(tiny)
    for video in videos:
        cy = ds.meta(video)["camera"]["cy"]
        flow = ds.gt_flow(video)
        h = flow.shape[2]
        rows = np.arange(h, dtype=np.float64)[:, None]
        for t in range(len(flow)):
            background = ds.instances(video, t) == 0
            assert np.hypot(*flow[t])[background].mean() > 0.2
            # vertical flow per row offset from the horizon = divergence of the image there;
            # rotation about the vertical axis adds (almost) none, so it measures 1 / depth
            divergence = flow[t, 1] / (rows - cy)
            far = background & (rows < cy - 4)
            near = background & (rows >= h - 3)
            assert far.sum() > 50 and near.sum() > 50
            assert np.median(divergence[near]) > np.median(divergence[far]) + 0.005


def test_moving_objects_flow_differs_from_the_ground_they_stand_on(tiny):
    """At an object's foot, a static object moves like the ground; a moving one does not."""
    ds, videos = _videos(tiny)
    gaps = {True: [], False: []}
    for video in videos:
        meta = ds.meta(video)
        flow = ds.gt_flow(video)
        for t in range(len(flow)):
            ids = ds.instances(video, t)
            for obj in meta["objects"]:
                rows, cols = np.nonzero(ids == obj["id"])
                # where it touches the road: its lowest row, above visible ground
                foot = (rows == rows.max()) if len(rows) else rows > 0
                rows, cols = rows[foot], cols[foot]
                keep = rows + 1 < ids.shape[0]
                rows, cols = rows[keep], cols[keep]
                keep = ids[rows + 1, cols] == 0
                rows, cols = rows[keep], cols[keep]
                if len(rows) < 2:
                    continue
                diff = flow[t][:, rows, cols] - flow[t][:, rows + 1, cols]
                gaps[obj["moving"]].append(float(np.median(np.hypot(*diff))))
        for obj in meta["objects"]:
            residual = [r for r in obj["residual_flow_px"] if r is not None]
            if obj["moving"]:
                # the tolerance scene._residual_ok allows around the configured range
                low, high = TINY.moving_residual_px
                assert all(0.6 * low <= r <= 1.25 * high for r in residual), obj
            else:
                assert all(r == 0 for r in residual), obj
    assert gaps[True] and gaps[False]
    assert max(gaps[False]) < 0.5, gaps[False]
    assert np.median(gaps[True]) > 1.0 and min(gaps[True]) > 0.5, gaps[True]


def test_objects_span_sizes_and_stay_in_view():
    config = SynthConfig(train_videos=6, val_videos=0, frames=6)
    from stages.synthgen.video import make_video

    fractions, seen, static = [], [], 0
    for index in range(config.train_videos):
        scene, video = make_video(config, "train", index)
        static += sum(not o.moving for o in scene.objects)
        for obj in scene.objects:
            area = (video.ids == obj.id).sum(axis=(1, 2)) / (config.height * config.width)
            fractions.append(area.max())
            seen.append(area > 0)
            assert (area > 0).mean() >= 0.5  # in view; hidden behind others at times at most
    assert static >= len(fractions) / 3
    assert np.mean(seen) > 0.9
    low, high = config.object_area  # both ends of the log-uniform range are drawn
    assert min(fractions) < 2 * low and max(fractions) > high / 3


def test_existing_output_needs_force(tiny, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match=f"--out {out}"):
        generate(out, TINY)
    assert (out / "keep.txt").read_text() == "mine"
    generate(out, TINY, force=True)
    assert not (out / "keep.txt").exists() and _files(out) == _files(tiny)
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no staging or retired dirs left


def test_failure_leaves_nothing_at_out(tmp_path, monkeypatch):
    calls = []

    def failing(root, config, split, index):
        calls.append(index)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(root, config, split, index)

    real = dataset_module.write_video
    monkeypatch.setattr(dataset_module, "write_video", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        generate(tmp_path / "data", TINY, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_killed_run_leaves_no_dataset(tmp_path):
    out = tmp_path / "data"
    code = (
        "from pathlib import Path; from stages.synthgen import SynthConfig, generate; "
        f"generate(Path({str(out)!r}), SynthConfig(train_videos=200, val_videos=0), workers=1)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".data.partial-*/train/train-0001")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()


@pytest.mark.parametrize(
    "changes, option",
    [
        ({"frames": 1}, "--frames"),
        ({"height": 8}, "--size"),
        ({"train_videos": 0, "val_videos": 0}, "--train-videos"),
        ({"families": ("car", "boat")}, "families"),
        ({"objects": (6, 4)}, "objects"),
        ({"static_fraction": (0.9, 1.0), "objects": (2, 4)}, "static_fraction"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_bad_config_names_the_option(changes, option):
    with pytest.raises(UserError, match=option):
        SynthConfig(**changes)


def _diod(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "diodcli.main", "--quiet", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)


def test_cli_synth_then_check(tmp_path):
    out = tmp_path / "synth"
    args = ["data", "synth", "--out", str(out), "--train-videos", "1", "--val-videos", "1"]
    args += ["--frames", "3", "--size", "48x160", "--seed", "3"]
    made = _diod(*args)
    assert made.returncode == 0, made.stderr
    assert json.loads((out / "synth.json").read_text())["config"]["seed"] == 3
    checked = _diod("data", "check", "--dataset", "folder", "--root", str(out))
    assert checked.returncode == 0, checked.stderr
    assert "train" in checked.stdout and "val" in checked.stdout and "48x160" in checked.stdout
    written = (out / "synth.json").stat().st_mtime_ns
    again = _diod(*args)  # the same settings: reused, not rewritten
    assert again.returncode == 0 and (out / "synth.json").stat().st_mtime_ns == written
    other = [*args[:-1], "4"]  # another seed
    refused = _diod(*other)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "--force" in lines[0]
    assert _diod(*other, "--force").returncode == 0
    assert json.loads((out / "synth.json").read_text())["config"]["seed"] == 4


def test_preview_picture(tiny, tmp_path):
    from stages.synthgen.preview import preview

    out = preview(tiny, tmp_path / "p.png", videos=2, scale=2)
    picture = cv2.imread(str(out))
    assert picture.shape == (2 * 48 * 2 + 4, 3 * 160 * 2 + 2 * 4, 3)


def test_cli_defaults_are_the_generator_defaults():
    from diodcli.commands.data import COMMAND

    options = {p.name: p.default for p in COMMAND.commands["synth"].params}
    defaults = SynthConfig()
    for name in ("seed", "train_videos", "val_videos", "frames"):
        assert options[name] == getattr(defaults, name), name
    assert options["size"] == f"{defaults.height}x{defaults.width}"


def test_gt_backward_flow_inverts_the_forward_flow(tiny):
    """The rendered backward flow takes each point back where the forward flow took it,
    except where it is occluded at t+1 (objects crossing one another, the frame edge)."""
    ds, videos = _videos(tiny)
    for video in videos:
        forward, backward = ds.gt_flow(video), ds.gt_backward_flow(video)
        assert backward.shape == forward.shape and backward.dtype == np.float32
        errors = np.concatenate(
            [round_trip_errors(f, b) for f, b in zip(forward, backward, strict=True)]
        )
        assert np.median(errors) < 0.01 and (errors < 0.05).mean() > 0.9
