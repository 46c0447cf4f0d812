"""Night videos of the street world: darker, flatter, noisier frames over the same scene,
drawn from their own stream (a set without nights is unchanged), recorded for eval."""

from __future__ import annotations

import dataclasses

import numpy as np
from helpers import synth_cli

from stages.datasets import open_dataset
from stages.synthgen import StreetConfig, generate
from stages.synthgen.street.video import make_street_video

DAY = StreetConfig(train_videos=6, val_videos=0, frames=2, height=48, width=160)
NIGHT = dataclasses.replace(DAY, night_fraction=1.0)
VEIL = NIGHT.night_veil


def test_a_night_is_the_same_scene_darker_flatter_and_noisier():
    for index in range(3):
        _, day, _ = make_street_video(DAY, "train", index)
        _, night, _ = make_street_video(NIGHT, "train", index)
        # the scene, its GT and its motion are the day's: only the pixels' colours change
        assert np.array_equal(day.ids, night.ids) and np.array_equal(day.flow, night.flow)
        lum_day, lum_night = day.rgb.astype(float).mean(-1), night.rgb.astype(float).mean(-1)
        assert lum_night.mean() < 0.4 * lum_day.mean()
        spread_day = np.subtract(*np.percentile(lum_day, [95, 5]))
        spread_night = np.subtract(*np.percentile(lum_night, [95, 5]))
        assert spread_night < 0.4 * spread_day  # contrast: the veil lifts the blacks
        # noise: beyond its exposure model, the night frame carries shot noise
        gain = (lum_night.mean() - 255 * VEIL) / lum_day.mean()
        residual = lum_night - (255 * VEIL + gain * lum_day)
        assert residual.std() > 2.0  # 0.9-1.0 without the shot noise, 2.8-3.3 with


def test_a_set_without_nights_is_unchanged_and_a_mixed_one_records_them(tmp_path):
    plain = generate(tmp_path / "plain", DAY, workers=1)
    mixed = generate(tmp_path / "mixed", dataclasses.replace(DAY, night_fraction=0.5), workers=1)
    assert "night_fraction" not in DAY.to_json()
    ds_plain, ds_mixed = open_dataset("synth", plain), open_dataset("synth", mixed)
    nights = 0
    for video in ds_plain.videos("train"):
        assert "light" not in ds_plain.meta(video) and ds_plain.conditions(video) == frozenset()
        other = ds_mixed.video("train", video.name)
        light = ds_mixed.meta(other)["light"]
        is_night = ds_mixed.conditions(other) == frozenset({"night"})
        assert light["night"] == is_night and (light["exposure"] < 1) == is_night
        same = np.array_equal(ds_plain.frame(video, 1), ds_mixed.frame(other, 1))
        assert same != is_night  # a day video of a mixed set is the plain set's video
        nights += is_night
    assert 0 < nights < len(ds_plain.videos("train"))


def test_cli_night_is_for_the_street_world(tmp_path):
    proc = synth_cli(
        tmp_path / "d", "--night-fraction", "0.5", "--train-videos", "1", "--val-videos", "0"
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith("--night-fraction 0.5: only the street world has nights")
    )
    assert not (tmp_path / "d").exists()
