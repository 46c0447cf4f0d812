"""One street video's world, drawn from its random generator: street, camera, static
world, actors and sun; and the shapes to render at each frame with how each moves next."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from stages.synthgen.street import layout
from stages.synthgen.street.actors import Actor
from stages.synthgen.street.config import StreetConfig
from stages.synthgen.street.layout import Street
from stages.synthgen.street.primitives import Dome, Shape
from stages.synthgen.street.rig import Rig, driving_rig, static_rig
from stages.synthgen.street.traffic import place_actors

#: no street furniture on a still camera's side from this far behind it to this far ahead,
#: m: it would sit inside a tree crown or look at a pole filling its view
STILL_CAMERA_CLEAR_M = (6.0, 15.0)


@dataclass(frozen=True)
class FrameShapes:
    shapes: list[Shape]
    #: (n, 3) how far each shape moves to the next frame, m (the sky: with the camera)
    motion: np.ndarray
    #: (n, 3) the same if every actor stood still: the flow of a static world
    rigid_motion: np.ndarray
    #: (n, 3, 8) bounding corners of each shape, NaN for unbounded ones
    corners: np.ndarray


@dataclass(frozen=True)
class StreetScene:
    rig: Rig
    street: Street
    world: tuple[Shape, ...]
    sky: Dome
    actors: tuple[Actor, ...]
    #: unit vector towards the sun (Y down), for shading
    sun: np.ndarray
    height: int
    width: int

    @cached_property
    def _still_corners(self) -> np.ndarray:
        """Corners of the sky, the world and the actors' parts at frame 0 (n, 3, 8)."""
        shapes = [self.sky, *self.world, *(p for a in self.actors for p in a.parts)]
        return np.stack([corners_of(s) for s in shapes])

    @cached_property
    def _velocities(self) -> np.ndarray:
        """Each shape's own velocity, m/frame (n, 3): zero but for the actors' parts."""
        still = np.zeros((1 + len(self.world), 3))
        parts = [a.velocity for a in self.actors for _ in a.parts]
        return np.concatenate([still, np.reshape(parts, (-1, 3))])

    def frame(self, t: int) -> FrameShapes:
        """The shapes at frame t; motion to t + 1 (zero at the last frame)."""
        cameras = self.rig.cameras
        ego = self.rig.displacement(t) if t + 1 < len(cameras) else np.zeros(3)
        shapes: list[Shape] = [self.sky.moved(cameras[t].centre - self.sky.centre)]
        shapes += self.world
        for actor in self.actors:
            shapes += actor.at(t)
        rigid = np.zeros_like(self._velocities)
        rigid[0] = ego  # the sky travels with the camera whether or not actors move
        motion = self._velocities.copy()
        motion[0] = ego
        corners = self._still_corners + t * self._velocities[:, :, None]
        return FrameShapes(shapes, motion, rigid, corners)


def corners_of(shape: Shape) -> np.ndarray:
    """A shape's bounding corners (3, 8), NaN where it is unbounded."""
    corners = shape.corners()
    return np.full((3, 8), np.nan) if corners is None else corners


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def sample_street_scene(rng: np.random.Generator, config: StreetConfig) -> StreetScene:
    street = layout.draw_street(rng, config)
    clear = None
    if rng.random() < config.static_camera_fraction:
        side = 1 if rng.random() < 0.5 else -1
        inset = _uniform(rng, (0.3, street.sidewalk - 0.3))
        rig = static_rig(rng, config, side * (street.curb[side > 0] + inset))
        clear = (side, -STILL_CAMERA_CLEAR_M[0], STILL_CAMERA_CLEAR_M[1])
    else:
        rig = driving_rig(rng, config, street.lane_x(int(rng.integers(street.lanes)), 1))
    world = (
        layout.ground(rng, config, street)
        + layout.buildings(rng, config, street)
        + layout.furniture(rng, config, street, clear)
    )
    sky = layout.sky(rng)
    actors = place_actors(rng, config, street, rig)
    elevation, azimuth = math.radians(_uniform(rng, (25, 65))), _uniform(rng, (-math.pi, math.pi))
    sun = np.array(
        [
            math.cos(elevation) * math.sin(azimuth),
            -math.sin(elevation),
            math.cos(elevation) * math.cos(azimuth),
        ]
    )
    return StreetScene(
        rig, street, tuple(world), sky, tuple(actors), sun, config.height, config.width
    )
