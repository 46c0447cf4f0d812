"""One synthetic video from (config, split, index): draw, render, write its folder.

Each video has its own random generator seeded by (seed, split, index), so a video does
not depend on how many others are generated, nor on the order or process that makes it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from stages.datasets.arrays import write_npz
from stages.datasets.imageio import write_png
from stages.lidar.projection import pinhole
from stages.synthgen.config import SynthConfig
from stages.synthgen.lidar import LIDAR_STREAM, Sensor, Sweeps, scan_surfaces, weak_returns
from stages.synthgen.render import RenderedVideo, render_video
from stages.synthgen.scene import Scene, sample_scene

SPLITS = ("train", "val")


def video_name(split: str, index: int) -> str:
    return f"{split}-{index:04d}"


def video_rng(seed: int, split: str, index: int, *stream: int) -> np.random.Generator:
    """A video's random generator; a ``stream`` number gives an independent one for a part
    (the LiDAR) that must not shift the draws of the rest."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, SPLITS.index(split), index, *stream])
    )


def make_video(config: SynthConfig, split: str, index: int) -> tuple[Scene, RenderedVideo]:
    rng = video_rng(config.seed, split, index)
    scene = sample_scene(rng, config)
    return scene, render_video(scene, rng, config.noise_std)


def sweep_video(config: SynthConfig, split: str, index: int, scene: Scene) -> Sweeps:
    """The LiDAR sweeps of a flat video's frames, from the LiDAR's own random stream. The
    backdrop returns nothing (it stands for scenery beyond the range, and the sky); the
    camera zooms, so each frame has its own projection."""
    rng = video_rng(config.seed, split, index, LIDAR_STREAM)
    sensor = Sensor.of(config, config.hfov_deg)
    weak = weak_returns(rng, config, len(scene.objects))
    idents = np.array([0, 0] + [o.id for o in scene.objects])  # backdrop, ground, objects
    echoes = np.arange(len(idents)) > 0
    points = [
        scan_surfaces(
            sensor,
            [scene.backdrop, scene.ground] + [o.surface(t) for o in scene.objects],
            idents,
            echoes,
            camera,
            config,
            weak,
            rng,
        )
        for t, camera in enumerate(scene.cameras)
    ]
    projections = np.stack([pinhole(c.focal, c.focal, c.cx, c.cy) for c in scene.cameras])
    return Sweeps(points, sensor.to_camera(np.eye(3)), projections, weak)


def _r(value: float) -> float:
    return round(float(value), 6)


def describe(
    config: SynthConfig,
    split: str,
    index: int,
    scene: Scene,
    video: RenderedVideo,
    sweeps: Sweeps | None = None,
) -> dict:
    """meta.json: which ids move, every object's family and path, the camera, the layers."""
    n_ids = len(scene.objects) + 1
    visible = [np.bincount(ids.ravel(), minlength=n_ids) for ids in video.ids]
    residual = np.linalg.norm(video.flow - video.rigid_flow, axis=1)  # (T-1, H, W)
    objects = []
    for obj in scene.objects:
        per_pair = []
        for t in range(len(residual)):
            sel = video.ids[t] == obj.id
            per_pair.append(_r(residual[t][sel].mean()) if sel.any() else None)
        path = [obj.anchor + obj.velocity * (t - obj.mid_frame) for t in range(config.frames)]
        objects.append(
            {
                "id": obj.id,
                "family": obj.family,
                "moving": obj.moving,
                "photo": obj.photo,
                "width_m": _r(obj.width),
                "height_m": _r(obj.height),
                "orientation_deg": _r(math.degrees(obj.orientation)),
                "velocity_m_per_frame": [_r(obj.velocity[0]), _r(obj.velocity[2])],
                "position_m": [[_r(p[0]), _r(p[2])] for p in path],
                "visible_px": [int(v[obj.id]) for v in visible],
                "residual_flow_px": per_pair,
            }
        )
        if sweeps is not None:
            objects[-1]["lidar_weak"] = bool(sweeps.weak[obj.id])
    cams = scene.cameras
    return {
        "video": video_name(split, index),
        "split": split,
        "seed": config.seed,
        "index": index,
        "frames": config.frames,
        "height": config.height,
        "width": config.width,
        "moving_ids": [o.id for o in scene.objects if o.moving],
        "static_ids": [o.id for o in scene.objects if not o.moving],
        "objects": objects,
        "camera": {
            "model": "pinhole, level (no pitch/roll), world X right, Y down, Z forward",
            "height_m": _r(config.camera_height_m),
            "speed_m_per_frame": _r(scene.speed),
            "yaw_rate_deg_per_frame": _r(math.degrees(scene.yaw_rate)),
            "zoom_rate_per_frame": _r(scene.zoom_rate),
            "cx": _r(cams[0].cx),
            "cy": _r(cams[0].cy),
            "focal_px": [_r(c.focal) for c in cams],
            "yaw_deg": [_r(math.degrees(c.yaw)) for c in cams],
            "position_m": [[_r(x) for x in c.position] for c in cams],
        },
        "ground": {"photo": scene.ground_photo, "tile_m": config.ground_tile_m},
        "backdrop": {"photo": scene.backdrop_photo, "radius_m": config.backdrop_radius_m},
    }


def write_video(root: Path, config: SynthConfig, split: str, index: int) -> str:
    """Generate and write ``<root>/<split>/<name>/``; returns the name."""
    scene, video = make_video(config, split, index)
    sweeps = sweep_video(config, split, index, scene) if config.lidar else None
    name = video_name(split, index)
    meta = describe(config, split, index, scene, video, sweeps)
    flows = (video.flow, video.backward_flow)
    write_video_files(root / split / name, video.rgb, video.ids, flows, meta)
    if sweeps is not None:
        sweeps.write(root / split / name, video.depth)
    return name


def write_video_files(
    folder: Path,
    rgb: np.ndarray,
    ids: np.ndarray,
    flows: tuple[np.ndarray, np.ndarray],
    meta: dict,
) -> None:
    """A synthetic video in the dataset layout (every world writes this one):
    ``rgb/`` and ``instances/`` PNGs, ``meta.json`` and the GT ``flow.npz`` (``flows``:
    forward and backward, each (T-1, 2, H, W))."""
    (folder / "rgb").mkdir(parents=True)
    (folder / "instances").mkdir()
    for t in range(len(rgb)):
        write_png(folder / "rgb" / f"{t:06d}.png", rgb[t])
        write_png(folder / "instances" / f"{t:06d}.png", ids[t])
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    write_npz(folder / "flow.npz", forward=flows[0], backward=flows[1])
