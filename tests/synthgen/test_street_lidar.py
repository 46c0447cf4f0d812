"""The street world's simulated LiDAR: where its points land, what it does not return, that
it changes no other file, and how the dataset hands it over and checks it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import synth_cli

from stages.datasets import open_dataset
from stages.errors import UserError
from stages.lidar.projection import valid
from stages.synthgen import StreetConfig, generate
from stages.synthgen.lidar import Sensor
from stages.synthgen.street.lidar import level_to_camera, scan
from stages.synthgen.street.primitives import Dome, Look, Rect
from stages.synthgen.street.rig import StreetCamera, intrinsics
from stages.synthgen.street.scene import FrameShapes, corners_of

TINY = StreetConfig(train_videos=2, val_videos=1, frames=3, height=48, width=160, lidar=True)


@pytest.fixture(scope="module")
def with_lidar(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("lidar") / "data", TINY, workers=1)


def _videos(root: Path):
    ds = open_dataset("synth", root)
    return ds, [v for split in ds.splits() for v in ds.videos(split)]


def test_a_wall_ahead_returns_its_distance_from_the_sensor():
    config = dataclasses.replace(
        TINY,
        lidar_beams=32,
        lidar_azimuth_step_deg=0.5,
        lidar_dropout=0.0,
        lidar_weak_object_fraction=0.0,
    )
    focal, cx, cy = intrinsics(config)
    camera = StreetCamera(focal, cx, cy, (0.0, -1.65, 0.0), 0.3, 0.05)  # yawed, pitched
    look = Look.of(np.full((4, 4, 3), 0.5), 1.0)
    forward = camera.rotation[:, 2] * np.array([1.0, 0.0, 1.0])
    forward /= np.linalg.norm(forward)
    right = np.array([forward[2], 0.0, -forward[0]])
    centre = camera.centre * np.array([1.0, 0.0, 1.0]) + 10.0 * forward
    wall = Rect(
        look,
        0,
        True,
        centre - 30 * right - np.array([0, 20.0, 0]),
        right,
        np.array([0.0, 1.0, 0.0]),
        (60.0, 20.0),
        -forward,
    )
    sky = Dome(look, 0, False, camera.centre, 1000.0)
    frame = FrameShapes(
        [sky, wall],
        np.zeros((2, 3)),
        np.zeros((2, 3)),
        np.stack([corners_of(sky), corners_of(wall)]),
    )
    sensor = Sensor.of(config, config.hfov_deg)
    points = scan(
        sensor, frame, camera, (48, 160), config, np.zeros(1, bool), np.random.default_rng(0)
    )
    assert len(points) > 1000
    # the LiDAR is 27 cm behind the camera, level: the wall is 10.27 m ahead of it along x
    np.testing.assert_allclose(points[:, 0], 10.27, atol=5 * config.lidar_range_noise_m)
    # the wall stands on the ground, 1.73 m below the sensor (within the range noise)
    assert points[:, 2].min() > -1.73 - 5 * config.lidar_range_noise_m
    # into the camera: every point in front of it, on the wall's plane
    to_camera = sensor.to_camera(level_to_camera(camera))
    assert not np.allclose(to_camera, np.eye(4))
    in_camera = points @ to_camera[:3, :3].T + to_camera[:3, 3]
    world = camera.centre + in_camera @ camera.rotation.T
    np.testing.assert_allclose((world - centre) @ forward, 0.0, atol=0.15)


def test_points_land_on_the_surfaces_the_camera_sees(with_lidar):
    ds, videos = _videos(with_lidar)
    agree = total = sky = 0
    errors = []
    for video in videos:
        with np.load(video.extra["dir"] / "lidar.npz") as data:
            sees_sky = data["depth"] == 0
        for t in range(len(video)):
            sparse = ds.lidar(video, t, (48, 160))
            dense = ds.dense_lidar(video, t, (48, 160))
            has = valid(sparse)
            both = has & valid(dense)
            z, depth = sparse[..., 2][both], dense[..., 2][both]
            agree += np.sum(np.abs(z - depth) < 0.05 * depth + 0.1)
            errors.append(np.abs(z - depth) / depth)
            total += both.sum()
            sky += (has & sees_sky[t]).sum()
    # Not all agree at 48x160: a cell is 0.5 degrees, over which the ground near the horizon
    # recedes by metres; several points in one cell keep the nearest; occlusion edges are seen
    # from 27 cm apart. The same data with the LiDAR-to-camera offset reversed gives 0.73 and
    # a 3.7 % median error, with the pitch reversed 0.47 and 7.0 % (measured).
    assert agree / total > 0.78
    assert np.median(np.concatenate(errors)) < 0.03
    assert sky / total < 0.002  # no sky returns, but for parallax at silhouettes


def test_the_sensor_is_physical_so_its_density_follows_the_grid(tmp_path):
    """By default the HDL-64E itself: on KITTI's frame size it fills KITTI's few percent of
    the pixels, binned onto a 96x320 grid the same sweep fills about a third (as a KITTI
    sweep does there); a 16-laser sensor with coarser firings is sparser."""
    kitti_size = dataclasses.replace(TINY, train_videos=1, val_videos=0, height=375, width=1242)
    ds, (video,) = _videos(generate(tmp_path / "kitti", kitti_size, workers=1))
    assert 0.02 < valid(ds.lidar(video, 0, (375, 1242))).mean() < 0.07
    assert 0.25 < valid(ds.lidar(video, 0, (96, 320))).mean() < 0.5
    sparse = dataclasses.replace(kitti_size, lidar_beams=16, lidar_azimuth_step_deg=0.66)
    ds, (video,) = _videos(generate(tmp_path / "sparse", sparse, workers=1))
    assert valid(ds.lidar(video, 0, (96, 320))).mean() < 0.1


def test_dense_depth_covers_every_surface_pixel(with_lidar):
    ds, videos = _videos(with_lidar)
    video = videos[0]
    with np.load(video.extra["dir"] / "lidar.npz") as data:
        depth = data["depth"]
    assert depth.shape == (len(video), 48, 160)
    dense = ds.dense_lidar(video, 1, (48, 160))
    seen = (depth[1] > 0) & (depth[1] <= 70)
    np.testing.assert_array_equal(valid(dense), seen)
    np.testing.assert_allclose(dense[..., 2][seen], depth[1][seen], rtol=1e-6)


def test_the_lidar_changes_no_other_file(with_lidar, tmp_path):
    plain = generate(tmp_path / "plain", dataclasses.replace(TINY, lidar=False), workers=1)
    for path in plain.rglob("*"):
        if path.is_file() and path.name not in ("meta.json", "synth.json"):
            assert path.read_bytes() == (with_lidar / path.relative_to(plain)).read_bytes()
    assert {p.name for p in with_lidar.rglob("lidar.npz")} and not list(plain.rglob("lidar.npz"))
    ds, videos = _videos(plain)
    assert (
        ds.lidar(videos[0], 0, (12, 40)) is None and ds.dense_lidar(videos[0], 0, (12, 40)) is None
    )


def test_weak_objects_lose_their_returns(tmp_path):
    def share_on_objects(config: StreetConfig) -> float:
        ds, videos = _videos(generate(tmp_path / str(hash(config)), config, workers=1))
        on = total = 0
        for video in videos:
            for t in range(len(video)):
                has = valid(ds.lidar(video, t, (48, 160)))
                on += (has & (ds.instances(video, t) > 0)).sum()
                total += (ds.instances(video, t) > 0).sum()
        return on / total

    base = dataclasses.replace(TINY, lidar_weak_object_fraction=0.0, lidar_dropout=0.0)
    weak = dataclasses.replace(base, lidar_weak_object_fraction=1.0, lidar_weak_dropout=1.0)
    strong, faint = share_on_objects(base), share_on_objects(weak)
    assert strong > 0.3  # the full sensor on a 48x160 grid: about half the pixels
    assert faint < 0.1 * strong  # all their returns lost: what is left is seen past their edges


def test_count_mismatch_is_one_error_line(with_lidar, tmp_path):
    ds, videos = _videos(with_lidar)
    path = videos[0].extra["dir"] / "lidar.npz"
    with np.load(path) as data:
        kept = {k: data[k] for k in data.files if k != "sweep_000002"}
    np.savez(path, **kept)
    with pytest.raises(UserError, match=r"lidar\.npz: 2 LiDAR sweeps .* 3 frames"):
        ds.check("train")
    with pytest.raises(UserError, match="no sweep_000002"):
        ds.lidar(videos[0], 2, (12, 40))


def test_cli_sets_the_sensor_of_lidar_only(tmp_path):
    tiny = ("--world", "street", "--train-videos", "1", "--val-videos", "0", "--frames", "2")
    proc = synth_cli(tmp_path / "off", *tiny, "--lidar-beams", "16")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith("--lidar-beams 16: sets the LiDAR of --lidar, which is off")
    )
    assert not (tmp_path / "off").exists()
    sparse = ("--lidar", "--lidar-beams", "16", "--lidar-step", "0.66", "--size", "48x160")
    weak = ("--lidar-weak-fraction", "1", "--lidar-weak-dropout", "0.95")
    assert synth_cli(tmp_path / "on", *tiny, *sparse, *weak).returncode == 0
    recorded = json.loads((tmp_path / "on" / "synth.json").read_text())["config"]
    assert (recorded["lidar_beams"], recorded["lidar_azimuth_step_deg"]) == (16, 0.66)
    assert (recorded["lidar_weak_object_fraction"], recorded["lidar_weak_dropout"]) == (1, 0.95)
    ds, (video,) = _videos(tmp_path / "on")
    assert ds.object_groups(video)["lidar_weak"] == {o["id"] for o in ds.meta(video)["objects"]}
