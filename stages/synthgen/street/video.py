"""One street video from (config, split, index): draw, render, write its folder.

The files are those of the flat world (rgb/, instances/, meta.json, flow.npz) with the same
meaning, so every consumer of a synth dataset reads a street one unchanged. Instance ids are
renumbered 1..n over the actors that are visible in at least one frame (in placement order);
actors never seen are left out of ``meta.json``.

With ``lidar`` on, ``lidar.npz`` holds one LiDAR sweep per frame (``sweep_000000``, ...:
(N, 3) float32 x forward, y left, z up in the sensor's frame, m; synthgen/lidar.py), the
transform into the camera's coordinates (``lidar_to_camera``, 4x4), the camera's projection
matrix (``camera``, 3x4, on the frame's pixels) and the camera's dense depth along its
optical axis (``depth``, (T, H, W) float32, m; 0 where it sees the sky): the ground truth a
scene-completion loss can be scored against. The LiDAR draws from its own random stream,
so turning it on changes no other file. With night videos (``night_fraction``, street/light.py)
``meta.json`` says which video is one (``light``: ``night``, ``exposure`` relative to the day).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from stages.lidar.projection import pinhole
from stages.synthgen.lidar import LIDAR_STREAM, Sensor, Sweeps, weak_returns
from stages.synthgen.street.config import StreetConfig
from stages.synthgen.street.lidar import level_to_camera, scan
from stages.synthgen.street.light import night_of
from stages.synthgen.street.render import StreetVideo, render_street
from stages.synthgen.street.scene import StreetScene, sample_street_scene
from stages.synthgen.video import video_name, video_rng, write_video_files


def make_street_video(
    config: StreetConfig, split: str, index: int
) -> tuple[StreetScene, StreetVideo, list[int]]:
    """The scene, its rendering with compact ids, and the actor index of each id - 1."""
    rng = video_rng(config.seed, split, index)
    scene = sample_street_scene(rng, config)
    video = render_street(scene, rng, config.noise_std, night_of(config, split, index))
    seen = np.flatnonzero(np.bincount(video.ids.ravel(), minlength=len(scene.actors) + 1))
    seen = seen[seen > 0]
    lookup = np.zeros(len(scene.actors) + 1, np.uint16)
    lookup[seen] = np.arange(1, len(seen) + 1)
    video = dataclasses.replace(video, ids=lookup[video.ids])
    return scene, video, [int(i) - 1 for i in seen]


def sweep_street_video(config: StreetConfig, split: str, index: int, scene: StreetScene) -> Sweeps:
    """The LiDAR sweeps of a video's frames, from the LiDAR's own random stream."""
    rng = video_rng(config.seed, split, index, LIDAR_STREAM)
    sensor = Sensor.of(config, config.hfov_deg)
    weak = weak_returns(rng, config, len(scene.actors))
    size = (scene.height, scene.width)
    cameras = scene.rig.cameras
    points = [
        scan(sensor, scene.frame(t), camera, size, config, weak, rng)
        for t, camera in enumerate(cameras)
    ]
    first = cameras[0]
    projection = pinhole(first.focal, first.focal, first.cx, first.cy)
    return Sweeps(points, sensor.to_camera(level_to_camera(first)), projection, weak)


def _r(value: float) -> float:
    return round(float(value), 6)


def describe(
    config: StreetConfig,
    split: str,
    index: int,
    scene: StreetScene,
    video: StreetVideo,
    actor_of: list[int],
    sweeps: Sweeps | None = None,
) -> dict:
    """meta.json: the flat world's keys (which ids move, per-object paths, the camera) plus
    what only a street has (roles, speeds in m/s, the camera's kind, the street's layout)."""
    n_ids = len(actor_of) + 1
    visible = [np.bincount(ids.ravel(), minlength=n_ids) for ids in video.ids]
    residual = np.linalg.norm(video.flow - video.rigid_flow, axis=1)
    objects = []
    for ident, k in enumerate(actor_of, start=1):
        actor = scene.actors[k]
        per_pair = []
        for t in range(len(residual)):
            sel = video.ids[t] == ident
            per_pair.append(_r(residual[t][sel].mean()) if sel.any() else None)
        path = [actor.start + actor.velocity * t for t in range(config.frames)]
        objects.append(
            {
                "id": ident,
                "family": actor.family,
                "role": actor.role,
                "moving": actor.moving,
                "width_m": _r(actor.width),
                "height_m": _r(actor.height),
                "length_m": _r(actor.length),
                "orientation_deg": _r(math.degrees(actor.heading)),
                "velocity_m_per_frame": [_r(actor.velocity[0]), _r(actor.velocity[2])],
                "speed_mps": _r(np.linalg.norm(actor.velocity) * config.fps),
                "position_m": [[_r(p[0]), _r(p[2])] for p in path],
                "visible_px": [int(v[ident]) for v in visible],
                "residual_flow_px": per_pair,
            }
        )
        if sweeps is not None:
            objects[-1]["lidar_weak"] = bool(sweeps.weak[k + 1])
    rig, street = scene.rig, scene.street
    cams = rig.cameras
    lit = {}
    if config.night_fraction:  # a set without night videos keeps its meta.json as it was
        night = night_of(config, split, index)
        lit["light"] = {
            "night": night is not None,
            "exposure": 1.0 if night is None else _r(night.gain),
        }
    return {
        "video": video_name(split, index),
        "split": split,
        "world": config.world,
        "seed": config.seed,
        "index": index,
        "frames": config.frames,
        "height": config.height,
        "width": config.width,
        "fps": config.fps,
        "moving_ids": [o["id"] for o in objects if o["moving"]],
        "static_ids": [o["id"] for o in objects if not o["moving"]],
        "objects": objects,
        "camera": {
            "model": "pinhole, yaw and downward pitch, world X right, Y down, Z forward",
            "kind": rig.kind,
            "height_m": _r(-cams[0].position[1]),
            "pitch_deg": _r(math.degrees(cams[0].pitch)),
            "speed_mps": [_r(v) for v in rig.speeds_mps],
            "accel_mps2": _r(rig.accel_mps2),
            "turn_radius_m": None if rig.turn_radius_m is None else _r(rig.turn_radius_m),
            "cx": _r(cams[0].cx),
            "cy": _r(cams[0].cy),
            "focal_px": [_r(c.focal) for c in cams],
            "yaw_deg": [_r(math.degrees(c.yaw)) for c in cams],
            "position_m": [[_r(x) for x in c.position] for c in cams],
        },
        "street": {
            "lanes_per_direction": street.lanes,
            "lane_width_m": _r(street.lane_width),
            "curb_m": [_r(c) for c in street.curb],
            "parking_lane": list(street.parking),
            "sidewalk_m": _r(street.sidewalk),
            "cross_street_z_m": None if street.cross_z is None else _r(street.cross_z),
            "end_z_m": _r(street.end_z),
        },
        **lit,
    }


def write_street_video(root: Path, config: StreetConfig, split: str, index: int) -> str:
    """Generate and write ``<root>/<split>/<name>/``; returns the name."""
    scene, video, actor_of = make_street_video(config, split, index)
    sweeps = sweep_street_video(config, split, index, scene) if config.lidar else None
    name = video_name(split, index)
    meta = describe(config, split, index, scene, video, actor_of, sweeps)
    flows = (video.flow, video.backward_flow)
    write_video_files(root / split / name, video.rgb, video.ids, flows, meta)
    if sweeps is not None:
        sweeps.write(root / split / name, video.depth)
    return name
