"""The static world of a street video: road, sidewalks, buildings, an optional cross street,
street furniture (trees, poles, signs) and the sky. None of it is a GT object (id 0).

The street runs along +Z, its centre line at X = 0; traffic keeps to the right, so the
camera's side is X > 0. Across the street, from the centre: driving lanes, a parking lane
on some sides, the curb, the sidewalk (raised by the curb height, with a furniture strip by
the curb and a walking zone by the buildings), then the building fronts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stages.synthgen.street import looks
from stages.synthgen.street.config import StreetConfig
from stages.synthgen.street.primitives import (
    Box,
    Cylinder,
    Dome,
    Ellipsoid,
    Look,
    Plane,
    Rect,
    Shape,
)

#: how far the street's surfaces reach behind the camera's start, m
BEHIND_M = 25.0
#: buildings' depth away from the street, m (their side walls show in gaps)
BUILDING_DEPTH_M = (8.0, 16.0)
#: the cross street's roads and buildings reach this far to each side, m
CROSS_REACH_M = 120.0
SKY_RADIUS_M = 5000.0
#: facade designs per video, shared by its buildings (each drawn at the largest building
#: size, mirrored beyond; a building shows the part that fits): one per building is slow
FACADES = 4
#: street furniture stands up to this far ahead, m: beyond, a tree is a few pixels
FURNITURE_AHEAD_M = 150.0
UP = np.array([0.0, -1.0, 0.0])
X, Z = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class Street:
    lanes: int
    lane_width: float
    #: road edge (curb) on each side, |X| in m: lanes plus a parking lane where there is one
    curb: tuple[float, float]
    parking: tuple[bool, bool]  # left, right
    sidewalk: float
    #: the cross street's centre, m along Z, and its half width (None: no cross street)
    cross_z: float | None
    cross_half: float
    end_z: float

    def facade(self, side: int) -> float:
        """X of the building fronts on a side (-1 left, +1 right)."""
        return side * (self.curb[side > 0] + self.sidewalk)

    def curb_x(self, side: int) -> float:
        return side * self.curb[side > 0]

    def lane_x(self, lane: int, direction: int) -> float:
        """Centre of lane ``lane`` (0: nearest the centre line) driving towards ``direction``
        (+1: +Z, the camera's way, on the right)."""
        return direction * (lane + 0.5) * self.lane_width

    def parking_x(self, side: int) -> float:
        return side * (
            self.lanes * self.lane_width + (self.curb[side > 0] - self.lanes * self.lane_width) / 2
        )

    def walk_zone(self, side: int) -> tuple[float, float]:
        """X range where people walk on a sidewalk (clear of the furniture strip)."""
        near, far = self.curb[side > 0] + 1.3, self.curb[side > 0] + self.sidewalk - 0.4
        return (side * near, side * far) if side > 0 else (side * far, side * near)

    def in_cross_street(self, z: float, margin: float = 0.0) -> bool:
        return self.cross_z is not None and abs(z - self.cross_z) < self.cross_half + margin


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def draw_street(rng: np.random.Generator, config: StreetConfig) -> Street:
    lanes = int(rng.integers(config.lanes_per_direction[0], config.lanes_per_direction[1] + 1))
    lane_width = _uniform(rng, config.lane_width_m)
    parking = tuple(bool(rng.random() < config.parking_lane_fraction) for _ in range(2))
    curb = tuple(lanes * lane_width + (config.parking_lane_m if p else 0.0) for p in parking)
    sidewalk = _uniform(rng, config.sidewalk_width_m)
    cross_z = None
    if rng.random() < config.cross_street_fraction:
        cross_z = _uniform(rng, config.cross_street_ahead_m)
    cross_half = _uniform(rng, config.lane_width_m) + 1.0 + sidewalk
    return Street(
        lanes,
        lane_width,
        curb,
        parking,
        sidewalk,
        cross_z,
        cross_half,
        _uniform(rng, config.street_end_m),
    )


def _spans(street: Street, start: float, stop: float) -> list[tuple[float, float]]:
    """[start, stop] along Z without the cross street."""
    if street.cross_z is None:
        return [(start, stop)]
    lo, hi = street.cross_z - street.cross_half, street.cross_z + street.cross_half
    return [(a, b) for a, b in ((start, min(stop, lo)), (max(start, hi), stop)) if b > a]


def _flat(look: Look, x: tuple[float, float], z: tuple[float, float], y: float) -> Rect:
    """A horizontal rectangle facing up."""
    return Rect(look, 0, True, np.array([x[0], y, z[0]]), X, Z, (x[1] - x[0], z[1] - z[0]), UP)


def ground(rng: np.random.Generator, config: StreetConfig, street: Street) -> list[Shape]:
    """Road, zebra crossing, curbs, sidewalks, the cross street, earth under everything."""
    start, stop = -BEHIND_M, street.end_z
    edges = (-street.curb[0], street.curb[1])
    road = Look.of(*looks.road(rng, edges, street.lanes, street.lane_width))
    shapes: list[Shape] = [_flat(road, edges, (start, stop), 0.0)]
    paving = Look.of(*looks.paving(rng))
    stone = Look.of(*looks.plain(rng, "gravel", (0.62, 0.62, 0.6), 0.4, looks.GROUND_TEXEL_M))
    curb_h = config.curb_height_m
    for side in (-1, 1):
        inner, outer = street.curb_x(side), street.facade(side) + side * BUILDING_DEPTH_M[1]
        for a, b in _spans(street, start, stop):
            shapes.append(_flat(paving, tuple(sorted((inner, outer))), (a, b), -curb_h))
            face = np.array([inner, 0.0, a])
            shapes.append(Rect(stone, 0, True, face, Z, UP, (b - a, curb_h), -side * X))
    if street.cross_z is not None:
        lo = street.cross_z - street.cross_half + street.sidewalk
        width = 2 * (street.cross_half - street.sidewalk)
        asphalt = Look.of(*looks.road(rng, (-width / 2, width / 2), 1, width / 2))
        for side in (-1, 1):
            x = tuple(sorted((street.curb_x(side), side * CROSS_REACH_M)))
            # the cross street's lanes run along X: its texture's length axis is X
            origin = np.array([x[0], 0.0, lo])
            shapes.append(Rect(asphalt, 0, True, origin, Z, X, (width, x[1] - x[0]), UP))
        for z0, z1 in ((lo - street.sidewalk, lo), (lo + width, lo + width + street.sidewalk)):
            for side in (-1, 1):
                x = tuple(sorted((street.curb_x(side), side * CROSS_REACH_M)))
                shapes.append(_flat(paving, x, (z0, z1), -curb_h))
        crossing = Look.of(*looks.zebra(rng, edges[1] - edges[0], 3.0))
        z0 = lo - 3.5
        shapes.append(_flat(crossing, edges, (z0, z0 + 3.0), -0.005))
    earth = Look.of(*looks.plain(rng, "gravel", (0.35, 0.32, 0.27), 0.5, 0.1))
    shapes.append(Plane(earth, 0, True, np.array([0.0, 0.02, 0.0]), X, Z, (1.0, 1.0), UP))
    return shapes


def buildings(rng: np.random.Generator, config: StreetConfig, street: Street) -> list[Shape]:
    """Rows of building boxes on both sides, buildings along the cross street, and one
    closing the street's end."""
    shapes: list[Shape] = []
    fronts = [
        Look.of(*looks.facade(rng, config.building_width_m[1], config.building_height_m[1]))
        for _ in range(FACADES)
    ]
    for side in (-1, 1):
        front = street.facade(side)
        for a, b in _spans(street, -BEHIND_M, street.end_z):
            z = a
            while z < b:
                width = min(_uniform(rng, config.building_width_m), b - z)
                look = fronts[rng.integers(FACADES)]
                shapes.append(_building(rng, config, look, front, side, (z, z + width)))
                z += width + _uniform(rng, config.building_gap_m)
        if street.cross_z is not None:  # fronts along the cross street, facing it
            for face_z, facing in (
                (street.cross_z - street.cross_half, -1),
                (street.cross_z + street.cross_half, 1),
            ):
                depth = _uniform(rng, BUILDING_DEPTH_M)
                reach = (front + side * 2 * BUILDING_DEPTH_M[1], side * CROSS_REACH_M)
                x0, x1 = sorted(reach)
                height = _uniform(rng, config.building_height_m)
                look = fronts[rng.integers(FACADES)]
                centre = np.array([(x0 + x1) / 2, -height / 2, face_z + facing * depth / 2])
                half = np.array([depth / 2, height / 2, (x1 - x0) / 2])
                shapes.append(Box(look, 0, True, centre, half, math.pi / 2))
    width = 2 * CROSS_REACH_M
    height = _uniform(rng, config.building_height_m)
    look = fronts[rng.integers(FACADES)]
    centre = np.array([0.0, -height / 2, street.end_z + BUILDING_DEPTH_M[1] / 2])
    shapes.append(
        Box(look, 0, True, centre, np.array([width / 2, height / 2, BUILDING_DEPTH_M[1] / 2]), 0.0)
    )
    return shapes


def _building(
    rng: np.random.Generator,
    config: StreetConfig,
    look: Look,
    front: float,
    side: int,
    span: tuple[float, float],
) -> Box:
    height = _uniform(rng, config.building_height_m)
    depth = _uniform(rng, BUILDING_DEPTH_M)
    length = span[1] - span[0]
    centre = np.array([front + side * depth / 2, -height / 2, (span[0] + span[1]) / 2])
    # yaw 0: the box's sides (x faces) are the front and back, textured along Z
    return Box(look, 0, True, centre, np.array([depth / 2, height / 2, length / 2]), 0.0)


def _spots(
    rng: np.random.Generator,
    street: Street,
    per_100m: tuple[float, float],
    clear: tuple[int, float, float] | None,
    side: int,
) -> list[float]:
    """Where along a side things stand (Poisson, at a density drawn from the range), m;
    none in the cross street, nor in the ``clear`` stretch of that side."""
    stop = min(street.end_z, FURNITURE_AHEAD_M)
    count = int(rng.poisson(_uniform(rng, per_100m) * (stop + BEHIND_M) / 100.0))
    zs = rng.uniform(-BEHIND_M, stop, count)
    if clear is not None and clear[0] == side:
        zs = zs[(zs < clear[1]) | (zs > clear[2])]
    return sorted(float(z) for z in zs if not street.in_cross_street(z, 1.0))


def furniture(
    rng: np.random.Generator,
    config: StreetConfig,
    street: Street,
    clear: tuple[int, float, float] | None = None,
) -> list[Shape]:
    """Trees, poles and signs in the strip by each curb: depth-varied clutter. ``clear``
    (side, z from, z to) keeps a stretch free, so a still camera is not inside a crown."""
    shapes: list[Shape] = []
    bark = Look.of(*looks.plain(rng, "gravel", (0.3, 0.22, 0.15), 0.6, looks.OBJECT_TEXEL_M))
    leaves = Look.of(*looks.plain(rng, "grass", (0.2, 0.38, 0.15), 0.8, 0.05))
    metal = Look.of(*looks.plain(rng, "moon", (0.45, 0.47, 0.5), 0.4, looks.OBJECT_TEXEL_M))
    for side in (-1, 1):
        x = street.curb_x(side) + side * 0.6
        ground_y = -config.curb_height_m
        for z in _spots(rng, street, config.trees_per_100m, clear, side):
            trunk_h, crown = _uniform(rng, (2.2, 3.5)), _uniform(rng, (1.2, 2.6))
            base = np.array([x, ground_y, z])
            shapes.append(
                Cylinder(bark, 0, True, base, _uniform(rng, (0.1, 0.22)), trunk_h + crown)
            )
            radii = np.array([crown, _uniform(rng, (1.0, 1.4)) * crown, crown])
            centre = base + np.array([0.0, -(trunk_h + 0.8 * radii[1]), 0.0])
            shapes.append(Ellipsoid(leaves, 0, True, centre, radii))
        for z in _spots(rng, street, config.poles_per_100m, clear, side):
            base = np.array([x, ground_y, z])
            shapes.append(
                Cylinder(
                    metal, 0, True, base, _uniform(rng, (0.05, 0.12)), _uniform(rng, (3.0, 8.0))
                )
            )
        for z in _spots(rng, street, config.signs_per_100m, clear, side):
            base = np.array([x, ground_y, z])
            post = _uniform(rng, (2.0, 2.6))
            shapes.append(Cylinder(metal, 0, True, base, 0.04, post))
            size = _uniform(rng, (0.5, 0.9))
            plate = Look.of(*looks.sign(rng, size, size), levels=4)
            facing = -Z if rng.random() < 0.7 else Z  # mostly facing oncoming traffic
            origin = base + np.array([-size / 2, -(post + size), 0.06 * facing[2]])
            shapes.append(Rect(plate, 0, True, origin, X, -UP, (size, size), facing))
    return shapes


def sky(rng: np.random.Generator) -> Dome:
    return Dome(
        Look.of(*looks.sky(rng, SKY_RADIUS_M), levels=5), 0, False, np.zeros(3), SKY_RADIUS_M
    )
