"""The street world of the synthetic generator: determinism, exactness of the GT flow,
physics of the motion, still cameras, and that existing consumers read it unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import round_trip_errors
from scipy import ndimage

from stages.datasets import open_dataset
from stages.errors import UserError
from stages.synthgen import WORLDS, StreetConfig, generate
from stages.synthgen.street.render import cast
from stages.synthgen.street.video import describe, make_street_video

REPO = Path(__file__).resolve().parents[2]
TINY = StreetConfig(train_videos=2, val_videos=1, frames=4, height=48, width=160)
#: nothing moves but the camera, straight ahead at a constant speed, level
STILL_WORLD = {
    "static_camera_fraction": 0.0,
    "stopped_fraction": 0.0,
    "turn_fraction": 0.0,
    "accel_mps2": (0.0, 0.0),
    "camera_pitch_deg": (0.0, 0.0),
    "standing_people": (0, 0),
    "walkers": (0, 0),
    "cars_ahead": (0, 0),
    "cars_oncoming": (0, 0),
    "cars_crossing": (0, 0),
    "parked_cars_per_100m": (0.0, 0.0),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("street") / "data", TINY, workers=1)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _owners(scene, config: StreetConfig) -> list[np.ndarray]:
    """Which shape each pixel sees, per frame (shapes keep their index across frames)."""
    owners = []
    for t, camera in enumerate(scene.rig.cameras):
        frame = scene.frame(t)
        owners.append(cast(frame.shapes, frame.corners, camera, config.height, config.width).owner)
    return owners


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    again = generate(tmp_path / "again", TINY, workers=2)  # process pool, same bytes
    assert _files(again) == _files(tiny)
    other = _files(generate(tmp_path / "other", StreetConfig(**{**TINY.__dict__, "seed": 1})))
    reference = _files(tiny)
    assert other.keys() == reference.keys()
    pngs = [k for k in reference if k.endswith(".png") and "/rgb/" in k]
    assert all(reference[k] != other[k] for k in pngs)


def test_synth_json_records_the_world(tiny):
    summary = json.loads((tiny / "synth.json").read_text())
    assert summary["config"] == TINY.to_json()
    assert summary["config"]["world"] == "street" and summary["config"]["fps"] == 10.0
    assert StreetConfig(**{k: v for k, v in summary["config"].items() if k != "world"}) == TINY


def test_adapter_reads_it_and_moving_ids_are_the_moving_actors(tiny):
    ds = open_dataset("synth", tiny)
    videos = [v for split in ds.splits() for v in ds.videos(split)]
    assert [v.name for v in videos] == ["train-0000", "train-0001", "val-0000"]
    for video in videos:
        meta = ds.meta(video)
        ids = {o["id"] for o in meta["objects"]}
        assert ids == set(range(1, len(ids) + 1))
        moving = {o["id"] for o in meta["objects"] if o["velocity_m_per_frame"] != [0.0, 0.0]}
        assert ds.moving_ids(video) == moving == set(meta["moving_ids"])
        assert set(meta["static_ids"]) == ids - moving
        raw = cv2.imread(str(video.instances[0]), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint16 and raw.shape == (48, 160)
        frames = [ds.instances(video, t) for t in range(len(video))]
        present = set().union(*(np.unique(f) for f in frames)) - {0}
        assert present == ids  # every listed object is seen, every object seen is listed
        for obj in meta["objects"]:
            assert max(obj["visible_px"]) > 0
            residual = [r for r in obj["residual_flow_px"] if r is not None]
            assert obj["moving"] or all(r == 0 for r in residual)
        flow = ds.gt_flow(video)
        assert flow.shape == (3, 2, 48, 160) and flow.dtype == np.float32
        assert np.isfinite(flow).all()


def test_gt_flow_explains_the_frames():
    """Noise-free: warping frame t+1 back with the GT flow gives frame t on static surfaces
    that stay visible (away from surface boundaries), far better than zero or 10%-off flow."""
    config = StreetConfig(**{**TINY.__dict__, "noise_std": 0.0, "height": 64, "width": 200})
    ys, xs = np.mgrid[0 : config.height, 0 : config.width].astype(np.float32)
    errors = []
    for index in range(3):
        scene, video, _ = make_street_video(config, "train", index)
        owners = _owners(scene, config)
        for t, flow in enumerate(video.flow):
            tx, ty = xs + flow[0], ys + flow[1]
            owner, nxt = owners[t], owners[t + 1].astype(np.float32)
            same = cv2.remap(nxt, tx, ty, cv2.INTER_NEAREST) == owner
            edge = ndimage.maximum_filter(owner, 3) != ndimage.minimum_filter(owner, 3)
            inside = (tx >= 1) & (tx <= config.width - 2) & (ty >= 1) & (ty <= config.height - 2)
            where = same & inside & ~edge & (video.ids[t] == 0)
            assert where.mean() > 0.25  # static surfaces, seen again, away from edges
            frame, frame_next = video.rgb[t].astype(np.float32), video.rgb[t + 1].astype(np.float32)

            def error(f, frame=frame, frame_next=frame_next, where=where):
                back = cv2.remap(frame_next, xs + f[0], ys + f[1], cv2.INTER_LINEAR)
                return float(np.abs(back - frame)[where].mean())

            exact = error(flow)
            errors.append(exact)
            if scene.rig.mean_speed_mps > 0:
                assert exact < 0.25 * error(0 * flow), (index, t)
                assert exact < min(error(0.9 * flow), error(1.1 * flow)), (index, t)
    assert np.mean(errors) < 2.0, errors  # 8-bit levels; measured about 1


def test_forward_translation_expands_from_the_focus_of_expansion():
    """A level camera driving straight with nothing else moving: every pixel flows away from
    the principal point, by r * dz / (Z - dz) for a point at depth Z: inverse depth."""
    config = StreetConfig(**{**TINY.__dict__, **STILL_WORLD})
    scene, video, _ = make_street_video(config, "train", 0)
    assert scene.rig.kind == "driving" and scene.rig.mean_speed_mps > 0 and not video.ids.any()
    cam, cam_next = scene.rig.cameras[:2]
    step = cam_next.position[2] - cam.position[2]
    assert step == pytest.approx(scene.rig.speeds_mps[0] / config.fps)
    frame = scene.frame(0)
    depth = cast(frame.shapes, frame.corners, cam, config.height, config.width).depth
    ys, xs = np.mgrid[0 : config.height, 0 : config.width]
    radial = np.stack([xs - cam.cx, ys - cam.cy])
    near = depth < 1000  # the sky is at 5 km: it barely moves
    expected = radial * (step / (depth - step))
    assert np.abs(video.flow[0] - expected)[:, near].max() < 1e-3
    magnitude = np.hypot(*video.flow[0])
    r = np.hypot(*radial)
    away = near & (r > 5)
    cosine = (video.flow[0] * radial).sum(axis=0)[away] / (magnitude * r)[away]
    assert cosine.min() > 0.9999
    per_radius = magnitude[away] / r[away]  # grows as the inverse of the depth at t + 1
    assert np.corrcoef(per_radius, 1 / (depth[away] - step))[0, 1] > 0.99999
    assert np.corrcoef(per_radius, 1 / depth[away])[0, 1] > 0.99


def test_frame_rate_scales_the_motion_per_frame():
    """Speeds are m/s: at half the frame rate the camera moves twice as far per frame."""
    base = {**TINY.__dict__, **STILL_WORLD, "frames": 2}
    steps = []
    for fps in (10.0, 5.0):
        scene, _, _ = make_street_video(StreetConfig(**{**base, "fps": fps}), "train", 0)
        steps.append(scene.rig.cameras[1].position[2] - scene.rig.cameras[0].position[2])
    assert steps[1] == pytest.approx(2 * steps[0])


def test_walkers_image_speeds_cover_half_to_three_pixels():
    """At 96x320 and 10 fps, walkers' own image motion (flow minus the flow they would have
    standing still) spans 0.5-3 px/frame, from physical walking speeds and distances."""
    config = StreetConfig(train_videos=12, frames=4, walkers=(8, 8), cars_ahead=(0, 0))
    speeds = []
    for index in range(config.train_videos):
        scene, video, actor_of = make_street_video(config, "train", index)
        meta = describe(config, "train", index, scene, video, actor_of)
        for obj in meta["objects"]:
            if obj["role"] in ("walking", "crossing_walk"):
                speeds += [r for r in obj["residual_flow_px"] if r is not None]
    speeds = np.asarray(speeds)
    assert len(speeds) > 100
    for low, high in ((0.5, 1.0), (1.0, 2.0), (2.0, 3.0)):
        assert ((speeds >= low) & (speeds < high)).sum() >= 2, (low, high)  # 2-3 px: near
    assert ((speeds >= 0.5) & (speeds <= 3.0)).mean() > 0.25
    assert (speeds < 0.5).mean() > 0.2  # walking along the line of sight, or far away


def test_still_camera_background_does_not_flow():
    config = StreetConfig(**{**TINY.__dict__, "static_camera_fraction": 1.0, "walkers": (3, 6)})
    moved = 0
    for index in range(2):
        scene, video, actor_of = make_street_video(config, "train", index)
        assert scene.rig.kind == "static"
        background = video.ids[:-1] == 0
        assert (np.moveaxis(video.flow, 1, -1)[background] == 0).all()  # exactly
        movers = np.isin(
            video.ids[:-1], [i + 1 for i, k in enumerate(actor_of) if scene.actors[k].moving]
        )
        moved += int((np.hypot(video.flow[:, 0], video.flow[:, 1])[movers] > 0.05).sum())
    assert moved > 0


def test_cameras_drive_stop_and_turn():
    """Per video, the camera's speed, braking and curves vary; some videos stand still."""
    config = StreetConfig(train_videos=40, frames=2, static_camera_fraction=0.0)
    from stages.synthgen.street.rig import driving_rig
    from stages.synthgen.video import video_rng

    rigs = [driving_rig(video_rng(1, "train", i), config, 1.6) for i in range(40)]
    speeds = [r.speeds_mps[0] for r in rigs]
    assert min(speeds) == 0.0 and max(speeds) > 10
    assert any(r.turn_radius_m is not None for r in rigs)
    assert any(r.turn_radius_m is None for r in rigs)
    yaw_rates = [abs(r.cameras[1].yaw - r.cameras[0].yaw) * config.fps for r in rigs]
    assert max(yaw_rates) > np.radians(5)


@pytest.mark.parametrize(
    "changes, option",
    [
        ({"fps": 0.0}, "--fps"),
        ({"frames": 1}, "--frames"),
        ({"static_camera_fraction": 1.5}, "static_camera_fraction"),
        ({"walk_speed_mps": (2.0, 1.0)}, "walk_speed_mps"),
        ({"lanes_per_direction": (0, 2)}, "lanes_per_direction"),
    ],
)
def test_bad_config_names_the_option(changes, option):
    with pytest.raises(UserError, match=option):
        StreetConfig(**changes)


def _diod(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "diodcli.main", "--quiet", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)


def test_cli_world_fps_and_still_fraction(tmp_path):
    from diodcli.commands.data import COMMAND

    worlds = next(p for p in COMMAND.commands["synth"].params if p.name == "world")
    assert list(worlds.type.choices) == list(WORLDS) and worlds.default == next(iter(WORLDS))
    out = tmp_path / "street"
    args = ["data", "synth", "--out", str(out), "--train-videos", "1", "--val-videos", "0"]
    street = ["--frames", "2", "--size", "32x96", "--world", "street", "--fps", "5"]
    made = _diod(*args, *street, "--still-fraction", "1")
    assert made.returncode == 0, made.stderr
    config = json.loads((out / "synth.json").read_text())["config"]
    assert config["world"] == "street" and config["fps"] == 5.0 and config["height"] == 32
    assert config["static_camera_fraction"] == 1.0
    for option in (["--fps", "5"], ["--still-fraction", "1"]):
        flat = ["data", "synth", "--out", str(tmp_path / "flat"), *option]
        refused = _diod(*flat, "--train-videos", "1", "--val-videos", "0")
        assert refused.returncode == 2 and option[0] in refused.stderr


def test_gt_backward_flow_inverts_the_forward_flow(tiny):
    """As the flat world's: the street's backward flow (camera and actors moved back)
    inverts its forward flow wherever the point stays visible."""
    ds = open_dataset("synth", tiny)
    for split in ds.splits():
        for video in ds.videos(split):
            forward, backward = ds.gt_flow(video), ds.gt_backward_flow(video)
            assert backward.shape == forward.shape and backward.dtype == np.float32
            errors = np.concatenate(
                [round_trip_errors(f, b) for f, b in zip(forward, backward, strict=True)]
            )
            assert np.median(errors) < 0.01 and (errors < 0.05).mean() > 0.9
