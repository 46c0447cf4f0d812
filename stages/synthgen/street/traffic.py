"""Placing the actors of a street video: parked cars, people standing and walking, traffic
ahead, oncoming and crossing.

Placement is physical, never tuned for any method: positions and speeds come from the
street's geometry and the configured m/s, and a draw is only rejected when the actor would
collide with one already placed, or with the camera's own car (or pole), in some frame.
Whatever image motion results (a car ahead at the camera's speed barely moves in the image,
a walker 40 m away moves half a pixel per frame) is what the dataset holds.
"""

from __future__ import annotations

import math

import numpy as np

from stages.synthgen.street.actors import Actor, person, vehicle
from stages.synthgen.street.config import StreetConfig
from stages.synthgen.street.layout import Street
from stages.synthgen.street.rig import Rig

TRIES = 12
#: clearance kept between actors (and from the camera's car), m
MARGIN_M = 0.3
#: the camera's car around the camera: width, length behind, length ahead, m (a roof camera)
EGO_CAR_M = (1.9, 2.8, 1.6)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def ego_footprints(rig: Rig) -> np.ndarray:
    """(frames, 4) ground boxes of the camera's car (a 0.6 m post for a still camera)."""
    boxes = []
    for cam in rig.cameras:
        x, _, z = cam.position
        if rig.kind == "static":
            boxes.append((x - 0.3, x + 0.3, z - 0.3, z + 0.3))
            continue
        width, behind, ahead = EGO_CAR_M
        c, s = math.cos(cam.yaw), math.sin(cam.yaw)
        along = np.array([-behind, ahead, -behind, ahead])
        across = np.array([-width / 2, -width / 2, width / 2, width / 2])
        xs, zs = x + along * s + across * c, z + along * c - across * s
        boxes.append((xs.min(), xs.max(), zs.min(), zs.max()))
    return np.asarray(boxes)


class Placer:
    """Accepts actors that collide with nothing placed so far, at any frame."""

    def __init__(self, config: StreetConfig, rig: Rig):
        self.frames = config.frames
        self.taken = [ego_footprints(rig)]
        self.actors: list[Actor] = []

    @property
    def next_id(self) -> int:
        return len(self.actors) + 1

    def fits(self, actor: Actor) -> bool:
        mine = actor.footprints(self.frames)
        for other in self.taken:
            apart = (
                (mine[:, 1] + MARGIN_M < other[:, 0])
                | (other[:, 1] + MARGIN_M < mine[:, 0])
                | (mine[:, 3] + MARGIN_M < other[:, 2])
                | (other[:, 3] + MARGIN_M < mine[:, 2])
            )
            if not apart.all():
                return False
        return True

    def add(self, draw) -> None:
        """Try ``draw(ident)`` (an Actor, or None for an impossible draw) a few times."""
        for _ in range(TRIES):
            actor = draw(self.next_id)
            if actor is not None and self.fits(actor):
                self.actors.append(actor)
                self.taken.append(actor.footprints(self.frames))
                return


def _count(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _sign(rng: np.random.Generator) -> int:
    return 1 if rng.random() < 0.5 else -1


ALONG_Z, ALONG_X = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])


class Traffic:
    """Draws of each kind of actor; each takes the id it would get and returns the actor
    (None when the draw is impossible, e.g. a sidewalk walk into the cross street)."""

    def __init__(self, rng: np.random.Generator, config: StreetConfig, street: Street, rig: Rig):
        self.rng, self.config, self.street = rng, config, street
        self.near, self.far = config.object_range_m
        self.mean_speed = rig.mean_speed_mps

    def _velocity(self, mps: float, direction: np.ndarray) -> np.ndarray:
        """m/s along a direction -> m per frame."""
        return direction * (mps / self.config.fps)

    def _van(self) -> bool:
        return bool(self.rng.random() < self.config.van_fraction)

    def parked_spots(self) -> list[float]:
        """Where cars stand along a parking lane, m: gaps drawn from the density."""
        rng = self.rng
        mean_gap = 100.0 / max(_uniform(rng, self.config.parked_cars_per_100m), 1e-6)
        spots, z = [], self.near + rng.exponential(mean_gap)
        while z < self.far:
            if not self.street.in_cross_street(z, 6.0):
                spots.append(z)
            z += 5.0 + rng.exponential(mean_gap)
        return spots

    def parked(self, ident: int, side: int, z: float) -> Actor:
        rng = self.rng
        heading = (0.0 if side > 0 else math.pi) + rng.normal(0.0, 0.03)
        start = np.array([self.street.parking_x(side) + rng.normal(0.0, 0.1), 0.0, z])
        return vehicle(rng, ident, self._van(), start, heading, np.zeros(3), "parked")

    def on_sidewalk(self, ident: int, role: str, speed: float) -> Actor | None:
        rng, street = self.rng, self.street
        side = _sign(rng)
        x0, x1 = street.walk_zone(side)
        z = _uniform(rng, (self.near, self.far))
        direction = _sign(rng)
        path = z + direction * speed / self.config.fps * np.array([0, self.config.frames - 1])
        if any(street.in_cross_street(float(p), 0.5) for p in path):
            return None  # no sidewalk there (the cross street)
        start = np.array([_uniform(rng, (x0, x1)), -self.config.curb_height_m, z])
        heading = 0.0 if direction > 0 else math.pi
        return person(rng, ident, start, heading, self._velocity(speed, direction * ALONG_Z), role)

    def crossing_walker(self, ident: int) -> Actor | None:
        rng, street = self.rng, self.street
        speed = _uniform(rng, self.config.walk_speed_mps)
        direction = _sign(rng)
        if street.cross_z is not None and rng.random() < 0.5:  # on the zebra
            z = street.cross_z - street.cross_half + street.sidewalk - 2.0 + rng.normal(0, 0.4)
        else:
            z = _uniform(rng, (self.near, self.far))
        low, high = -street.curb[0] + 0.3, street.curb[1] - 0.3
        x = _uniform(rng, (low, high))
        if not low <= x + direction * speed / self.config.fps * (self.config.frames - 1) <= high:
            return None  # would step onto the curb within the clip: walkers stay on one level
        velocity = self._velocity(speed, direction * ALONG_X)
        return person(
            rng, ident, np.array([x, 0.0, z]), direction * math.pi / 2, velocity, "crossing_walk"
        )

    def in_lane(self, ident: int, direction: int, speed: float, role: str) -> Actor:
        """A vehicle in a lane of the main street driving towards ``direction`` (+1: +Z)."""
        rng = self.rng
        lane = int(rng.integers(self.street.lanes))
        x = self.street.lane_x(lane, direction) + rng.normal(0.0, 0.15)
        start = np.array([x, 0.0, _uniform(rng, (self.near, self.far))])
        heading = 0.0 if direction > 0 else math.pi
        velocity = self._velocity(speed, direction * ALONG_Z)
        return vehicle(rng, ident, self._van(), start, heading, velocity, role)

    def ahead(self, ident: int) -> Actor:
        relative = _uniform(self.rng, self.config.ahead_relative_speed_mps)
        return self.in_lane(ident, 1, max(0.0, self.mean_speed + relative), "ahead")

    def oncoming(self, ident: int) -> Actor:
        return self.in_lane(
            ident, -1, _uniform(self.rng, self.config.oncoming_speed_mps), "oncoming"
        )

    def crossing(self, ident: int) -> Actor:
        """A vehicle on the cross street, keeping right."""
        rng, street = self.rng, self.street
        direction = _sign(rng)
        lane_w = street.cross_half - street.sidewalk - 0.5
        z = street.cross_z - direction * lane_w / 2
        speed = _uniform(rng, self.config.crossing_speed_mps)
        start = np.array([_uniform(rng, (-40.0, 40.0)), 0.0, z])
        velocity = self._velocity(speed, direction * ALONG_X)
        return vehicle(
            rng, ident, self._van(), start, direction * math.pi / 2, velocity, "crossing"
        )


def place_actors(
    rng: np.random.Generator, config: StreetConfig, street: Street, rig: Rig
) -> list[Actor]:
    """Every actor of a video, in placement order: parked cars, people standing, walkers,
    traffic ahead, oncoming, crossing."""
    placer, draw = Placer(config, rig), Traffic(rng, config, street, rig)
    for side, has_lane in zip((-1, 1), street.parking, strict=True):
        if has_lane:
            for z in draw.parked_spots():
                placer.add(lambda i, side=side, z=z: draw.parked(i, side, z))
    for _ in range(_count(rng, config.standing_people)):
        placer.add(lambda i: draw.on_sidewalk(i, "standing", 0.0))
    for _ in range(_count(rng, config.walkers)):
        if rng.random() < config.crossing_walker_fraction:
            placer.add(draw.crossing_walker)
        else:
            placer.add(
                lambda i: draw.on_sidewalk(i, "walking", _uniform(rng, config.walk_speed_mps))
            )
    for _ in range(_count(rng, config.cars_ahead)):
        placer.add(draw.ahead)
    for _ in range(_count(rng, config.cars_oncoming)):
        placer.add(draw.oncoming)
    if street.cross_z is not None:
        for _ in range(_count(rng, config.cars_crossing)):
            placer.add(draw.crossing)
    return placer.actors
