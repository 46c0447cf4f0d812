"""The LiDAR of the flat world (the shared sensor, ``stages/synthgen/lidar.py``): its points
land on what the camera sees, through a zooming camera's per-frame projection; it changes
no other file; ``diod data synth --lidar`` makes it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import synth_cli

from stages.datasets import open_dataset
from stages.lidar.projection import valid
from stages.synthgen import SynthConfig, generate

TINY = SynthConfig(train_videos=2, val_videos=1, frames=4, height=48, width=160, lidar=True)


@pytest.fixture(scope="module")
def flat(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("flat-lidar") / "data", TINY, workers=1)


def test_points_land_on_the_surfaces_the_zooming_camera_sees(flat):
    ds = open_dataset("synth", flat)
    ds.check("train")
    agree = total = on_objects = object_pixels = 0
    for video in (v for split in ds.splits() for v in ds.videos(split)):
        with np.load(video.extra["dir"] / "lidar.npz") as data:
            assert data["camera"].shape == (len(video), 3, 4)  # one projection per frame
            focal = ds.meta(video)["camera"]["focal_px"]  # the zoom
            np.testing.assert_allclose(data["camera"][:, 0, 0], focal, atol=1e-5)
        for t in range(len(video)):
            sparse, dense = ds.lidar(video, t, (48, 160)), ds.dense_lidar(video, t, (48, 160))
            both = valid(sparse) & valid(dense)
            z, depth = sparse[..., 2][both], dense[..., 2][both]
            agree += np.sum(np.abs(z - depth) < 0.05 * depth + 0.1)
            total += both.sum()
            objects = ds.instances(video, t) > 0
            on_objects += (valid(sparse) & objects).sum()
            object_pixels += objects.sum()
        assert all("lidar_weak" in o for o in ds.meta(video)["objects"])
    # the LiDAR sits 27 cm behind the camera: a few points see past an occlusion edge
    assert total > 1000 and agree / total > 0.9
    assert on_objects / object_pixels > 0.2


def test_the_lidar_changes_no_other_file(flat, tmp_path):
    plain = generate(tmp_path / "plain", dataclasses.replace(TINY, lidar=False), workers=1)
    for path in plain.rglob("*"):
        if path.is_file() and path.name not in ("meta.json", "synth.json"):
            assert path.read_bytes() == (flat / path.relative_to(plain)).read_bytes()
    recorded = json.loads((plain / "synth.json").read_text())["config"]
    assert not any(key.startswith("lidar") for key in recorded)


def test_cli_makes_a_flat_world_with_lidar(tmp_path):
    proc = synth_cli(
        tmp_path / "d",
        *("--lidar", "--lidar-beams", "32", "--train-videos", "1", "--val-videos", "0"),
        *("--frames", "2", "--size", "32x96"),
    )
    assert proc.returncode == 0, proc.stderr
    recorded = json.loads((tmp_path / "d" / "synth.json").read_text())["config"]
    assert recorded["lidar"] and recorded["lidar_beams"] == 32 and "world" not in recorded
    assert (tmp_path / "d" / "train" / "train-0000" / "lidar.npz").is_file()
