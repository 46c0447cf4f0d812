"""Drawing one video's world from its random generator: camera path, layers, objects.

Objects are placed at the middle frame (so they are well framed on average) by the size
they should have on screen, then checked over every frame: they must stay in front of the
camera and mostly in view. Moving objects get a ground-plane velocity scaled so that their
flow differs from the flow a static object there would have by the configured number of
pixels, which is what makes them separable by motion (and what makes static ones not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from stages.synthgen.camera import Camera, camera_path
from stages.synthgen.config import SynthConfig, min_static
from stages.synthgen.families import FAMILIES, Family
from stages.synthgen.surfaces import Backdrop, Billboard, Ground
from stages.synthgen.textures import Texture, crop, luminance

#: ground photo -> tint (the photos are grey): asphalt, grass, paving
GROUND_PHOTOS = {
    "gravel": (0.45, 0.45, 0.47),
    "grass": (0.36, 0.5, 0.24),
    "brick": (0.6, 0.38, 0.32),
}
#: far scenery -> part of the photo used (top, bottom, left, right): a launch site under
#: the sky, the wall and shelves of a garage, buildings behind a lawn, grey concrete-like rock
BACKDROP_PHOTOS = {
    "rocket": (0.0, 1.0, 0.0, 1.0),
    "motorcycle": (0.0, 0.32, 0.0, 1.0),
    "camera": (0.0, 0.47, 0.5, 1.0),
    "moon": (0.0, 1.0, 0.0, 1.0),
}
#: a panorama is wider than any photo: crops are stretched this much horizontally
BACKDROP_STRETCH = 1.6
PLACEMENT_TRIES = 25


@dataclass(frozen=True)
class SceneObject:
    id: int
    family: str
    moving: bool
    photo: str
    width: float
    height: float
    orientation: float
    anchor: np.ndarray  # bottom centre at the middle frame
    velocity: np.ndarray  # metres per frame; zero when static
    mid_frame: int
    texture: Texture

    def surface(self, t: int) -> Billboard:
        anchor = self.anchor + self.velocity * (t - self.mid_frame)
        return Billboard(
            anchor,
            self.orientation,
            self.width,
            self.height,
            FAMILIES[self.family].silhouette,
            self.texture,
        )


@dataclass(frozen=True)
class Scene:
    cameras: list[Camera]
    ground: Ground
    ground_photo: str
    backdrop: Backdrop
    backdrop_photo: str
    objects: list[SceneObject]
    height: int
    width: int
    speed: float
    yaw_rate: float
    zoom_rate: float


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _ground(rng: np.random.Generator, config: SynthConfig) -> tuple[Ground, str]:
    names = sorted(GROUND_PHOTOS)
    name = names[rng.integers(len(names))]
    tex = crop(rng, name, 1.0, (512, 512), min_frac=0.6)
    detail = luminance(tex) / max(float(luminance(tex).mean()), 1e-3)
    # wear and stains: a smooth random field over the tile, so the road is not uniform
    stains = cv2.resize(
        rng.uniform(0.7, 1.3, (6, 6)).astype(np.float32), (512, 512), interpolation=cv2.INTER_CUBIC
    )
    tint = np.asarray(GROUND_PHOTOS[name], np.float32) * np.float32(rng.uniform(0.8, 1.2))
    image = np.clip(tint * ((0.3 + 0.7 * detail) * stains)[..., None], 0, 1)
    offset = (_uniform(rng, (0, 50)), _uniform(rng, (0, 50)))
    return Ground(Texture(image, levels=9), config.ground_tile_m, offset), name


def _backdrop(
    rng: np.random.Generator, config: SynthConfig, cameras: list[Camera]
) -> tuple[Backdrop, str]:
    """A photo strip covering every azimuth and elevation the clip looks at."""
    names = sorted(BACKDROP_PHOTOS)
    name = names[rng.integers(len(names))]
    first, last = cameras[0], cameras[-1]
    half_fov = math.atan2(config.width / 2, min(first.focal, last.focal))
    yaws = (first.yaw, last.yaw)
    margin = math.radians(5)
    start = min(yaws) - half_fov - margin
    arc = max(yaws) + half_fov + margin - start
    top_elevation = first.cy / min(first.focal, last.focal)
    height_m = 1.1 * (config.camera_height_m + config.backdrop_radius_m * top_elevation)
    aspect = arc * config.backdrop_radius_m / height_m
    tex_w = 1024
    tex_h = max(32, int(round(tex_w / aspect)))
    region = BACKDROP_PHOTOS[name]
    image = crop(rng, name, aspect / BACKDROP_STRETCH, (tex_h, tex_w), 0.7, region, bottom=True)
    if name in ("camera", "moon"):  # grey photos: a faint colour cast, as in real footage
        image = image * np.asarray(rng.uniform(0.85, 1.1, 3), np.float32)
    backdrop = Backdrop(
        Texture(np.clip(image, 0, 1), levels=6), config.backdrop_radius_m, arc, height_m, start
    )
    return backdrop, name


def _in_view(cameras: list[Camera], billboard_at, config: SynthConfig) -> float:
    """Worst fraction, over frames, of the object's bounding box inside the image (0 if it
    comes closer than ``near_m``)."""
    worst = 1.0
    for t, cam in enumerate(cameras):
        u, v, z = cam.project(billboard_at(t).corners())
        if z.min() < config.near_m:
            return 0.0
        box = (u.max() - u.min()) * (v.max() - v.min())
        iu = max(0.0, min(u.max(), config.width - 0.5) - max(u.min(), -0.5))
        iv = max(0.0, min(v.max(), config.height - 0.5) - max(v.min(), -0.5))
        worst = min(worst, iu * iv / max(box, 1e-9))
    return worst


def _residual_px(camera: Camera, board: Billboard, velocity: np.ndarray) -> float:
    """Mean image displacement in ``camera`` (the next frame's) caused by the object's own
    motion from where ``board`` stands: its flow minus the flow it would have if static."""
    centre = board.anchor[:, None] + [[0.0], [-board.height / 2], [0.0]]
    points = np.concatenate([board.corners(), centre], axis=1)
    u0, v0, _ = camera.project(points)
    u1, v1, _ = camera.project(points + velocity[:, None])
    return float(np.hypot(u1 - u0, v1 - v0).mean())


def _residual_ok(cameras: list[Camera], obj: SceneObject, bounds: tuple[float, float]) -> bool:
    """Whether a moving object's residual flow stays near the configured range in every
    frame pair (it drifts as the object's depth changes)."""
    residuals = [
        _residual_px(cameras[t + 1], obj.surface(t), obj.velocity) for t in range(len(cameras) - 1)
    ]
    return 0.6 * bounds[0] <= min(residuals) and max(residuals) <= 1.25 * bounds[1]


def _place(
    rng: np.random.Generator,
    config: SynthConfig,
    cameras: list[Camera],
    family: Family,
    moving: bool,
    ident: int,
) -> SceneObject:
    mid = (len(cameras) - 1) // 2
    cam = cameras[mid]
    px_per_m = 1.2 * cameras[-1].focal / config.near_m
    width, height = _uniform(rng, family.width_m), _uniform(rng, family.height_m)
    texture_image, photo = family.paint(rng, width, height, px_per_m)
    texture = Texture(texture_image, levels=5)
    fill = family.fill(width, height)
    best: tuple[tuple[bool, float], SceneObject] | None = None
    for _ in range(PLACEMENT_TRIES):
        area = math.exp(_uniform(rng, tuple(math.log(a) for a in config.object_area)))
        depth = cam.focal * math.sqrt(fill * width * height / (area * config.height * config.width))
        depth = float(np.clip(depth, *config.object_depth_m))
        u = _uniform(rng, (0.08 * config.width, 0.92 * config.width))
        ray = cam.rays(np.array(u), np.array(cam.cy))
        anchor = cam.centre + depth * ray
        anchor[1] = 0.0
        orientation = cam.yaw + math.radians(_uniform(rng, (-20, 20)))
        velocity = np.zeros(3)
        if moving:
            # mostly across the view (within 60 degrees of it, either way): motion along
            # the viewing direction barely changes the image of a distant object
            heading = cam.yaw + math.radians(_uniform(rng, (-60, 60)) + 180 * rng.integers(2))
            unit = np.array([math.cos(heading), 0.0, -math.sin(heading)])
            board = Billboard(anchor, orientation, width, height, family.silhouette, texture)
            per_metre = _residual_px(cameras[mid + 1], board, unit)
            speed = _uniform(rng, config.moving_residual_px) / max(per_metre, 1e-9)
            velocity = min(speed, config.max_object_speed_m) * unit
        obj = SceneObject(
            ident,
            family.name,
            moving,
            photo,
            width,
            height,
            orientation,
            anchor,
            velocity,
            mid,
            texture,
        )
        in_view = _in_view(cameras, obj.surface, config)
        plausible = not moving or _residual_ok(cameras, obj, config.moving_residual_px)
        if plausible and in_view >= config.min_in_view:
            return obj
        if best is None or (plausible, in_view) > best[0]:
            best = ((plausible, in_view), obj)
    return best[1]  # no draw met every constraint: the closest one


def sample_scene(rng: np.random.Generator, config: SynthConfig) -> Scene:
    speed = _uniform(rng, config.camera_speed_m)
    yaw_rate = math.radians(_uniform(rng, config.yaw_rate_deg))
    zoom_rate = _uniform(rng, config.zoom_rate)
    cameras = camera_path(
        config.frames,
        width=config.width,
        height=config.height,
        hfov_deg=config.hfov_deg,
        horizon=config.horizon,
        camera_height=config.camera_height_m,
        speed=speed,
        yaw_rate=yaw_rate,
        zoom_rate=zoom_rate,
    )
    ground, ground_photo = _ground(rng, config)
    backdrop, backdrop_photo = _backdrop(rng, config, cameras)
    n = int(rng.integers(config.objects[0], config.objects[1] + 1))
    lo = min_static(n, config.static_fraction[0])
    n_static = int(np.clip(round(n * _uniform(rng, config.static_fraction)), lo, n - 1))
    moving = rng.permutation(np.arange(n) >= n_static)
    families = [FAMILIES[name] for name in config.families]
    objects = [
        _place(rng, config, cameras, families[rng.integers(len(families))], bool(m), i + 1)
        for i, m in enumerate(moving)
    ]
    return Scene(
        cameras,
        ground,
        ground_photo,
        backdrop,
        backdrop_photo,
        objects,
        config.height,
        config.width,
        speed,
        yaw_rate,
        zoom_rate,
    )
