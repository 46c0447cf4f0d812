"""Every knob of the ``street`` world, in physical units, with why its default.

Speeds are metres per second and the frame rate turns them into metres per frame, so the
image motion (px/frame) follows from physics, the field of view and the frame size; nothing
here is a pixel speed. Ranges are ``(low, high)``, sampled uniformly per video (per object
where it applies); counts are inclusive integer ranges and densities are per 100 m of
street, per side. The whole config is written to ``<out>/synth.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from stages.errors import UserError
from stages.synthgen.config import VideoSetConfig, check_range, validate_video_set


@dataclass(frozen=True)
class StreetConfig(VideoSetConfig):
    """A camera driving down (or standing in) a 3-D street with traffic and pedestrians."""

    world: ClassVar[str] = "street"

    #: frames per second: KITTI's rate (10 Hz); divides every speed below
    fps: float = 10.0
    #: horizontal field of view, degrees: KITTI's colour cameras (about 81)
    hfov_deg: float = 81.0
    #: share of videos from a still, raised camera (surveillance-like) instead of a car
    static_camera_fraction: float = 0.25
    #: Gaussian sensor noise, 8-bit levels: as the flat world
    noise_std: float = 2.0

    # --- night (street/light.py): off unless asked for (``diod data synth --night-fraction``)
    #: share of videos filmed at night: dark, low-contrast, noisy frames (the LiDAR is not
    #: affected); 0 keeps every video a day one
    night_fraction: float = 0.0
    #: exposure at night as a share of the day's, drawn per video: street lighting
    night_gain: tuple[float, float] = (0.08, 0.25)
    #: level the blacks are lifted to (flare of street lights, black level), share of white
    night_veil: float = 0.04
    #: shot-noise variance per 8-bit level of signal: std 5 levels at level 25
    night_shot_noise: float = 1.0

    # --- the driving camera
    #: height above the road, m: KITTI's roof rig
    camera_height_m: float = 1.65
    #: downward pitch, degrees: a windscreen camera is roughly level, the car body tilts it
    camera_pitch_deg: tuple[float, float] = (-1.0, 3.0)
    #: speed at the first frame, m/s: 11-50 km/h, urban traffic
    drive_speed_mps: tuple[float, float] = (3.0, 14.0)
    #: share of driving videos that start at a standstill (at a light, in a queue)
    stopped_fraction: float = 0.2
    #: longitudinal acceleration, m/s^2 (speed clipped at 0): -4 is firm braking (a 4 m/s car
    #: stops within a 1.1 s clip), +2 a moderate start; a stopped car draws it too, so about
    #: a third of those pull away and the rest stay at rest
    accel_mps2: tuple[float, float] = (-4.0, 2.0)
    #: share of driving videos on a curve; the others drive straight down the street
    turn_fraction: float = 0.3
    #: curve radius, m: 12 is a tight urban corner, 80 a gentle bend (yaw rate = speed/radius,
    #: up to 67 deg/s at 14 m/s); the camera is mid-curve, so it stays near its lane
    turn_radius_m: tuple[float, float] = (12.0, 80.0)

    # --- the still camera
    #: height, m: a lamp post or a first-floor window
    static_camera_height_m: tuple[float, float] = (2.5, 6.0)
    #: downward pitch, degrees: looking down at the street, horizon still in view
    static_camera_pitch_deg: tuple[float, float] = (8.0, 22.0)
    #: how far it looks across the street, degrees from the street's axis
    static_camera_yaw_deg: tuple[float, float] = (10.0, 60.0)

    # --- the street
    #: lane width, m: 2.9 (narrow urban) to 3.6 (arterial)
    lane_width_m: tuple[float, float] = (2.9, 3.6)
    #: lanes per direction (the camera drives in one of its side's)
    lanes_per_direction: tuple[int, int] = (1, 2)
    #: chance that a side of the road has a parking lane (where parked cars stand)
    parking_lane_fraction: float = 0.6
    #: parking lane width, m
    parking_lane_m: float = 2.2
    #: sidewalk width, m: facades stand this far beyond the road edge
    sidewalk_width_m: tuple[float, float] = (2.5, 5.0)
    #: curb height, m (sidewalks are raised)
    curb_height_m: float = 0.12
    #: building frontage, m
    building_width_m: tuple[float, float] = (8.0, 30.0)
    #: building height, m: two to eight storeys
    building_height_m: tuple[float, float] = (6.0, 24.0)
    #: gap between neighbouring buildings, m (0: terraced; the wider ones are alleys)
    building_gap_m: tuple[float, float] = (0.0, 4.0)
    #: chance of a cross street ahead (crossing cars and a zebra crossing)
    cross_street_fraction: float = 0.5
    #: where the cross street is, m ahead of the camera's start
    cross_street_ahead_m: tuple[float, float] = (15.0, 60.0)
    #: where a building closes the street's end, m ahead (beyond: sky)
    street_end_m: tuple[float, float] = (100.0, 250.0)

    # --- clutter: depth-varied things that are NOT objects (GT id 0)
    #: street trees per 100 m per side (trunk + crown)
    trees_per_100m: tuple[float, float] = (0.0, 10.0)
    #: lamp posts and bare poles per 100 m per side
    poles_per_100m: tuple[float, float] = (2.0, 8.0)
    #: traffic signs on posts per 100 m per side
    signs_per_100m: tuple[float, float] = (0.0, 5.0)

    # --- objects (GT instances)
    #: how far from the camera's start objects are placed, m along the street (behind the
    #: camera: traffic that overtakes it, objects a still camera sees looking back)
    object_range_m: tuple[float, float] = (-15.0, 80.0)
    #: parked cars per 100 m of a parking lane
    parked_cars_per_100m: tuple[float, float] = (4.0, 14.0)
    #: people standing still, per video
    standing_people: tuple[int, int] = (0, 4)
    #: walking people, per video
    walkers: tuple[int, int] = (2, 8)
    #: share of walkers crossing the road (the others walk along a sidewalk)
    crossing_walker_fraction: float = 0.3
    #: walking speed, m/s: a stroll to a brisk walk
    walk_speed_mps: tuple[float, float] = (0.5, 1.8)
    #: cars ahead driving the camera's way, per video
    cars_ahead: tuple[int, int] = (0, 3)
    #: their speed minus the camera's mean speed, m/s: around 0 they barely move in the image
    #: while the static world expands (a car at 0 m/s is stopped in traffic: static)
    ahead_relative_speed_mps: tuple[float, float] = (-4.0, 4.0)
    #: oncoming cars per video
    cars_oncoming: tuple[int, int] = (0, 3)
    #: oncoming speed, m/s
    oncoming_speed_mps: tuple[float, float] = (4.0, 14.0)
    #: cars crossing at the cross street, per video that has one
    cars_crossing: tuple[int, int] = (0, 2)
    #: crossing speed, m/s
    crossing_speed_mps: tuple[float, float] = (3.0, 12.0)
    #: share of vehicles that are vans (tall boxes) rather than cars
    van_fraction: float = 0.15

    def validate(self) -> None:
        validate_street(self)

    def to_json(self) -> dict[str, Any]:
        """The world first, then every field: ``synth.json`` says which world made it.
        Without night videos their settings are left out, as the LiDAR's: the data does not
        depend on them (and a dataset written before they existed stays the same dataset)."""
        fields = super().to_json()
        if not self.night_fraction:
            fields = {k: v for k, v in fields.items() if not k.startswith("night")}
        return {"world": self.world, **fields}


RANGES = {  # option -> (lowest allowed, highest allowed or None)
    "camera_pitch_deg": (-30.0, 45.0),
    "drive_speed_mps": (0.0, 40.0),
    "accel_mps2": (-10.0, 10.0),
    "turn_radius_m": (5.0, None),
    "static_camera_height_m": (0.5, None),
    "static_camera_pitch_deg": (-30.0, 60.0),
    "static_camera_yaw_deg": (0.0, 90.0),
    "lane_width_m": (2.0, 5.0),
    "lanes_per_direction": (1, 4),
    "sidewalk_width_m": (1.5, None),
    "building_width_m": (2.0, None),
    "building_height_m": (1.0, None),
    "building_gap_m": (0.0, None),
    "cross_street_ahead_m": (0.0, None),
    "street_end_m": (20.0, None),
    "trees_per_100m": (0.0, 50.0),
    "poles_per_100m": (0.0, 50.0),
    "signs_per_100m": (0.0, 50.0),
    "object_range_m": (-100.0, 500.0),
    "parked_cars_per_100m": (0.0, 20.0),
    "standing_people": (0, 100),
    "walkers": (0, 100),
    "walk_speed_mps": (0.0, 10.0),
    "cars_ahead": (0, 50),
    "ahead_relative_speed_mps": (-40.0, 40.0),
    "cars_oncoming": (0, 50),
    "oncoming_speed_mps": (0.0, 40.0),
    "cars_crossing": (0, 50),
    "crossing_speed_mps": (0.0, 40.0),
    "night_gain": (0.01, 1.0),
}
FRACTIONS = (
    "night_fraction",
    "night_veil",
    "static_camera_fraction",
    "stopped_fraction",
    "turn_fraction",
    "parking_lane_fraction",
    "cross_street_fraction",
    "crossing_walker_fraction",
    "van_fraction",
)


def validate_street(config: StreetConfig) -> None:
    """Reject street configs the generator cannot honour, naming the option."""
    validate_video_set(config)
    if not 0 < config.fps <= 1000:
        raise UserError(f"--fps {config.fps}: expected frames per second in (0, 1000]")
    if not 10 <= config.hfov_deg <= 150:
        raise UserError(f"synth option hfov_deg={config.hfov_deg}: expected 10..150 degrees")
    for name, (low, high) in RANGES.items():
        check_range(config, name, low, high)
    for name in FRACTIONS:
        if not 0 <= getattr(config, name) <= 1:
            raise UserError(f"synth option {name}={getattr(config, name)}: expected [0, 1]")
    for name in ("camera_height_m", "parking_lane_m"):
        if getattr(config, name) <= 0:
            raise UserError(f"synth option {name}={getattr(config, name)}: expected > 0")
    if not 0 <= config.curb_height_m < config.camera_height_m:
        raise UserError(
            f"synth option curb_height_m={config.curb_height_m}: expected 0 <= curb < camera"
        )
    for name in ("noise_std", "night_shot_noise"):
        if getattr(config, name) < 0:
            raise UserError(f"synth option {name}={getattr(config, name)}: expected >= 0")
