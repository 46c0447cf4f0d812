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


def _per_frame(mps: float, direction: np.ndarray, fps: float) -> np.ndarray:
    return direction * (mps / fps)


def place_actors(
    rng: np.random.Generator, config: StreetConfig, street: Street, rig: Rig
) -> list[Actor]:
    placer = Placer(config, rig)
    near, far = config.object_range_m
    fps = config.fps
    along_z, along_x = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
    curb_y = -config.curb_height_m

    def is_van() -> bool:
        return bool(rng.random() < config.van_fraction)

    # parked cars: along each parking lane, gaps drawn from the density
    for side, has_lane in zip((-1, 1), street.parking, strict=True):
        if not has_lane:
            continue
        density = _uniform(rng, config.parked_cars_per_100m)
        z = near + rng.exponential(100.0 / max(density, 1e-6))
        while z < far:
            if not street.in_cross_street(z, 6.0):
                heading = (0.0 if side > 0 else math.pi) + rng.normal(0.0, 0.03)
                start = np.array([street.parking_x(side) + rng.normal(0.0, 0.1), 0.0, z])
                placer.add(
                    lambda i, s=start, h=heading: vehicle(
                        rng, i, is_van(), s, h, np.zeros(3), "parked"
                    )
                )
            z += 5.0 + rng.exponential(100.0 / max(density, 1e-6))

    def on_sidewalk(ident: int, role: str, speed: float) -> Actor | None:
        side = 1 if rng.random() < 0.5 else -1
        x0, x1 = street.walk_zone(side)
        z = _uniform(rng, (near, far))
        direction = 1 if rng.random() < 0.5 else -1
        path = z + direction * speed / fps * np.array([0, config.frames - 1])
        if any(street.in_cross_street(float(p), 0.5) for p in path):
            return None  # no sidewalk there (the cross street)
        start = np.array([_uniform(rng, (x0, x1)), curb_y, z])
        heading = 0.0 if direction > 0 else math.pi
        return person(rng, ident, start, heading, _per_frame(speed, direction * along_z, fps), role)

    for _ in range(_count(rng, config.standing_people)):
        placer.add(lambda i: on_sidewalk(i, "standing", 0.0))

    def crossing_walker(ident: int) -> Actor | None:
        speed = _uniform(rng, config.walk_speed_mps)
        direction = 1 if rng.random() < 0.5 else -1
        if street.cross_z is not None and rng.random() < 0.5:  # on the zebra
            z = street.cross_z - street.cross_half + street.sidewalk - 2.0 + rng.normal(0, 0.4)
        else:
            z = _uniform(rng, (near, far))
        x = _uniform(rng, (-street.curb[0] + 0.3, street.curb[1] - 0.3))
        end = x + direction * speed / fps * (config.frames - 1)
        if not -street.curb[0] + 0.3 <= end <= street.curb[1] - 0.3:
            return None  # would step onto the curb within the clip: walkers stay on one level
        start = np.array([x, 0.0, z])
        heading = direction * math.pi / 2
        return person(
            rng, ident, start, heading, _per_frame(speed, direction * along_x, fps), "crossing_walk"
        )

    for _ in range(_count(rng, config.walkers)):
        if rng.random() < config.crossing_walker_fraction:
            placer.add(crossing_walker)
        else:
            placer.add(lambda i: on_sidewalk(i, "walking", _uniform(rng, config.walk_speed_mps)))

    mean_speed = rig.mean_speed_mps

    def in_lane(ident: int, direction: int, speed: float, role: str) -> Actor:
        lane = int(rng.integers(street.lanes))
        start = np.array(
            [
                street.lane_x(lane, direction) + rng.normal(0.0, 0.15),
                0.0,
                _uniform(rng, (near, far)),
            ]
        )
        heading = 0.0 if direction > 0 else math.pi
        return vehicle(
            rng, ident, is_van(), start, heading, _per_frame(speed, direction * along_z, fps), role
        )

    for _ in range(_count(rng, config.cars_ahead)):
        placer.add(
            lambda i: in_lane(
                i, 1, max(0.0, mean_speed + _uniform(rng, config.ahead_relative_speed_mps)), "ahead"
            )
        )
    for _ in range(_count(rng, config.cars_oncoming)):
        placer.add(lambda i: in_lane(i, -1, _uniform(rng, config.oncoming_speed_mps), "oncoming"))

    if street.cross_z is not None:

        def crossing(ident: int) -> Actor:
            direction = 1 if rng.random() < 0.5 else -1
            lane_w = street.cross_half - street.sidewalk - 0.5
            z = street.cross_z - direction * lane_w / 2  # keeping right
            speed = _uniform(rng, config.crossing_speed_mps)
            start = np.array([_uniform(rng, (-40.0, 40.0)), 0.0, z])
            heading = direction * math.pi / 2
            return vehicle(
                rng,
                ident,
                is_van(),
                start,
                heading,
                _per_frame(speed, direction * along_x, fps),
                "crossing",
            )

        for _ in range(_count(rng, config.cars_crossing)):
            placer.add(crossing)
    return placer.actors
