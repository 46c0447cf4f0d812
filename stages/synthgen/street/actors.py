"""The GT objects of a street: cars, vans and people, and how each is built from shapes.

An actor is a rigid set of shapes that translates at a constant velocity (metres per frame,
from metres per second and the frame rate) without turning, so every shape of it moves by
the same vector and the flow of its points follows exactly. Static actors (parked cars,
people standing, traffic stopped at 0 m/s) are GT objects too, only not moving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stages.synthgen.street import looks
from stages.synthgen.street.primitives import Box, Cylinder, Ellipsoid, Look, Shape

Array = np.ndarray
#: height of a car body's underside above the ground, m (the painted tyre band covers it)
CLEARANCE_M = 0.1


@dataclass(frozen=True)
class Actor:
    family: str  # car, van, pedestrian
    role: str  # parked, standing, walking, crossing_walk, ahead, oncoming, crossing
    parts: tuple[Shape, ...]  # at frame 0
    #: ground point under its centre at frame 0 (3,), m
    start: Array
    #: m per frame (3,); zero for a static actor
    velocity: Array
    heading: float  # radians, yaw of its forward axis (0: +Z)
    width: float
    length: float
    height: float

    @property
    def moving(self) -> bool:
        return bool(np.any(self.velocity != 0))

    def at(self, t: int) -> list[Shape]:
        delta = self.velocity * t
        return [part.moved(delta) for part in self.parts]

    def footprints(self, frames: int) -> Array:
        """(frames, 4) ground-plane boxes x0, x1, z0, z1 it covers at each frame, m."""
        c, s = abs(math.cos(self.heading)), abs(math.sin(self.heading))
        half_x = (self.width * c + self.length * s) / 2
        half_z = (self.width * s + self.length * c) / 2
        t = np.arange(frames)[:, None]
        x = self.start[0] + self.velocity[0] * t
        z = self.start[2] + self.velocity[2] * t
        return np.concatenate([x - half_x, x + half_x, z - half_z, z + half_z], axis=1)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def vehicle(
    rng: np.random.Generator,
    ident: int,
    van: bool,
    start: Array,
    heading: float,
    velocity: Array,
    role: str,
) -> Actor:
    """A car (body box plus a glass cabin box) or a van (one tall box), wheels painted on."""
    if van:
        length, width = _uniform(rng, (4.8, 6.5)), _uniform(rng, (1.9, 2.15))
        body, cabin = _uniform(rng, (1.8, 2.5)), 0.0
    else:
        length, width = _uniform(rng, (3.8, 4.9)), _uniform(rng, (1.65, 1.9))
        body, cabin = _uniform(rng, (0.6, 0.8)), _uniform(rng, (0.42, 0.58))
    forward = np.array([math.sin(heading), 0.0, math.cos(heading)])
    paint = Look.of(*looks.car_body(rng, length, body + CLEARANCE_M), levels=5)
    centre = start + np.array([0.0, -(body + CLEARANCE_M) / 2, 0.0])
    half = np.array([width / 2, (body + CLEARANCE_M) / 2, length / 2])
    parts: list[Shape] = [Box(paint, ident, True, centre, half, heading)]
    if cabin:
        cabin_len = length * _uniform(rng, (0.45, 0.6))
        windows = Look.of(*looks.glass(rng, cabin_len, cabin), levels=4)
        top = (
            start
            + forward * (-0.08 * length)
            + np.array([0.0, -(body + CLEARANCE_M + cabin / 2), 0.0])
        )
        half = np.array([0.44 * width, cabin / 2, cabin_len / 2])
        parts.append(Box(windows, ident, True, top, half, heading))
    family = "van" if van else "car"
    return Actor(
        family,
        role,
        tuple(parts),
        start,
        velocity,
        heading,
        width,
        length,
        body + cabin + CLEARANCE_M,
    )


def person(
    rng: np.random.Generator, ident: int, start: Array, heading: float, velocity: Array, role: str
) -> Actor:
    """Legs, torso (vertical cylinders) and a head (ellipsoid), 1.5-1.95 m tall."""
    height = _uniform(rng, (1.5, 1.95))
    legs, torso_top = 0.47 * height, 0.86 * height
    leg_r, torso_r = _uniform(rng, (0.12, 0.16)), _uniform(rng, (0.17, 0.23))
    trousers = Look.of(*looks.clothes(rng, dark=rng.random() < 0.7), levels=4)
    top = Look.of(*looks.clothes(rng, dark=False), levels=4)
    face = Look.of(*looks.skin(rng), levels=4)
    up = np.array([0.0, -1.0, 0.0])
    head_r = (height - torso_top) / 2 + 0.01
    parts = (
        Cylinder(trousers, ident, True, start.copy(), leg_r, legs),
        Cylinder(top, ident, True, start + up * legs, torso_r, torso_top - legs),
        Ellipsoid(
            face, ident, True, start + up * (height - head_r), np.array([0.8, 1.0, 0.9]) * head_r
        ),
    )
    width = 2 * torso_r
    return Actor("pedestrian", role, parts, start, velocity, heading, width, width, height)
