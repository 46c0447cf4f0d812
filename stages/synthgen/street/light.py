"""Night videos of the street world: dark, low-contrast, noisy frames (xMOD, #16).

A LiDAR brings its own light and a camera does not: at night the frames lose what a 2D
model learns from while the range maps stay as they are by day. xMOD's claim is that the 3D
teacher then carries the 2D student (its "dark frames"); a set with night videos lets that
be measured (``diod eval`` scores the night videos apart).

The image model, applied to the day's linear colour c in [0, 1] (``Night.expose``):

    night = veil + gain * c,   then day's sensor noise, plus shot noise of variance
    shot * (night in 8-bit levels)

``gain`` is the share of the day's exposure the camera gets (drawn per video), ``veil`` the
flare of street lights and the sensor's black level, which lifts the blacks, so a night
frame has a quarter to a twelfth of the day's contrast (20-64 levels between black and
white paint, against 255), and shot noise grows with the signal as photon noise does,
its share of the signal largest where the frame is darkest. Which videos are at night and their gain
come from the video's own random stream, so a set without night videos (the default) is
byte for byte what it was before night existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stages.synthgen.street.config import StreetConfig
from stages.synthgen.video import video_rng

#: the light's random stream, apart from the scene's (0) and the LiDAR's (1)
LIGHT_STREAM = 2


@dataclass(frozen=True)
class Night:
    """One night video's exposure and the random stream of its extra noise."""

    gain: float
    veil: float
    shot: float
    rng: np.random.Generator

    def expose(self, colour: np.ndarray) -> np.ndarray:
        """The day's linear colour (H, W, 3) in about [0, 1] -> the night frame's."""
        return (self.veil + self.gain * colour).astype(np.float32)

    def shot_noise(self, levels: np.ndarray) -> np.ndarray:
        """Photon noise (8-bit levels) of a frame of ``levels`` (8-bit, before noise)."""
        return self.rng.normal(0.0, 1.0, levels.shape) * np.sqrt(self.shot * levels.clip(0))


def night_of(config: StreetConfig, split: str, index: int) -> Night | None:
    """The video's night, or None for a day video."""
    if config.night_fraction == 0:
        return None
    rng = video_rng(config.seed, split, index, LIGHT_STREAM)
    if rng.random() >= config.night_fraction:
        return None
    return Night(
        float(rng.uniform(*config.night_gain)), config.night_veil, config.night_shot_noise, rng
    )
