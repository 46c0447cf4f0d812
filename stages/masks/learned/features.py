"""What the learned segmenter sees of frame t: dimensionless evidence maps.

Every channel is free of the frame's resolution, frame rate and flow method, so that a model
trained on one synthetic world at one size applies to footage of another: flow in percent of
the frame width, flow against the camera in units of the flow's own noise (its median
forward-backward round-trip error, ``motion.flow_trust``), positions in [-1, 1]. Magnitudes
are squashed with asinh (linear near zero, logarithmic beyond), so a walker at the noise
and a 30 px oncoming car both fall in a range a network handles.

Two looks at the camera's motion: the homography with local background removal (exact for a
rotating camera or a far scene) and the plane + parallax decomposition (``ParallaxModel``:
a static point's parallax runs away from the epipole, so a parked car's large parallax is
"along" and a crossing car's is "across"). And two looks in time: the pair t -> t+1 and,
where the flow artifact has backward flow, t -> t-1, whose evidence is at frame t's pixels
too: a mover at the noise floor is seen twice. And the frames themselves: the brightness
change that the camera's flow does not explain, against frame t+1 and frame t-1, where flow
estimated on a still camera invents motion (repetitive texture) or smears a slow mover.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stages.masks.camera import MAD_TO_SIGMA, PairGeometry, ParallaxModel, pixel_grid
from stages.masks.motion import compensate, flow_trust, landing
from stages.masks.params import MotionParams

#: channel names, in order
CHANNELS = (
    "relative_u",  # flow t -> t+1 against the homography, in noise units
    "relative_v",
    "residual",  # its magnitude, in noise units
    "flow_u",  # flow t -> t+1 in percent of the width
    "flow_v",
    "round_trip",  # forward-backward round-trip error, in noise units
    "trusted",  # flow_trust's verdict (inside, on texture, consistent)
    "parallax_along",  # parallax (flow less the ground plane's) away from the epipole
    "parallax_across",  # ... and across the line through it, in noise units
    "epipole_distance",  # distance from the epipole, fraction of the width (0: none found)
    "previous_u",  # flow t -> t-1 against its homography, in noise units
    "previous_v",
    "previous_residual",
    "previous_valid",  # 1 where t -> t-1 exists (not the first frame, backward flow known)
    "change",  # |frame t - frame t+1 moved back by the camera's flow|, in its robust spread
    "previous_change",  # the same against frame t-1
    "image",  # the frame, gray, standardised
    "x",  # position, -1 (left) .. 1 (right)
    "y",  # -1 (top) .. 1 (bottom)
    "noise",  # log10 of the noise in percent of the width (the frame's regime)
)
#: the noise is never taken below this, px: float16 flow storage resolves about 0.01 px,
#: and exact (synthetic) flow would otherwise turn every rounding error into evidence
NOISE_FLOOR_PX = 0.02
_INDEX = {name: i for i, name in enumerate(CHANNELS)}
#: channels squashed with asinh
_SQUASHED = [
    _INDEX[c]
    for c in (
        "relative_u",
        "relative_v",
        "residual",
        "flow_u",
        "flow_v",
        "round_trip",
        "parallax_along",
        "parallax_across",
        "previous_u",
        "previous_v",
        "previous_residual",
        "change",
        "previous_change",
    )
]
#: the brightness change's spread is never taken below this, gray levels: the 8-bit step
CHANGE_FLOOR = 1.0


@dataclass
class PairEvidence:
    """Features of frame t and what the instance steps need besides (of the pair
    t -> t+1)."""

    #: (len(CHANNELS), H, W) float32
    features: np.ndarray
    confident: np.ndarray
    #: (2, H, W) flow against the camera (homography less local background), px
    relative_flow: np.ndarray
    residual: np.ndarray
    camera_fitted: bool
    lands: tuple[np.ndarray, np.ndarray]
    #: the flow's noise, px (at least NOISE_FLOOR_PX)
    noise: float


def _standardised(gray: np.ndarray) -> np.ndarray:
    return (gray - gray.mean()) / max(float(gray.std()), 1.0)


def _change(gray: np.ndarray, other: np.ndarray, camera_flow: np.ndarray) -> np.ndarray:
    """|I_t(x) - I_other(x + camera flow)| over its robust spread (``MAD_TO_SIGMA`` x its
    median over the frame), 0 where x + camera flow leaves the frame: the brightness change
    that the camera's own motion does not explain. Flow estimated on repetitive texture can
    invent motion where nothing changed, and it smears a slow mover into its surroundings;
    the frames themselves change on the mover only, up to its true edges."""
    h, w = gray.shape
    xs, ys = landing(camera_flow)
    warped = cv2.remap(
        other.astype(np.float32), xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    change = cv2.absdiff(gray, warped)
    inside = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    median = float(np.median(change[inside])) if inside.any() else 0.0
    spread = max(MAD_TO_SIGMA * median, CHANGE_FLOOR)
    change[~inside] = 0.0
    return change / np.float32(spread)


def _parallax(forward: np.ndarray, confident: np.ndarray, params: MotionParams, out: np.ndarray):
    """Fill the parallax channels of ``out`` (px; scaled later), zero where there is no
    epipole (a still or rotating camera)."""
    along, across, distance = (
        _INDEX[c] for c in ("parallax_along", "parallax_across", "epipole_distance")
    )
    model = ParallaxModel(params)
    geometry = PairGeometry(flow=forward, confident=confident)
    cv2.setRNGSeed(params.seed)
    components = model.epipolar_components(geometry) if model.fit(geometry) else None
    if components is None:
        return  # no coherent translation: the channels stay zero
    out[along], out[across], out[distance] = components
    out[distance] /= np.float32(forward.shape[2])


def pair_evidence(
    forward: np.ndarray,
    backward: np.ndarray | None,
    params: MotionParams,
    image: np.ndarray | None = None,
    previous: tuple[np.ndarray, np.ndarray] | None = None,
    landed: np.ndarray | None = None,
    previous_image: np.ndarray | None = None,
) -> PairEvidence:
    """Evidence for frame t from its flow to t+1 (2, H, W) float32, the flow back (or
    None), the frame (8-bit gray at the flow's size, or None), ``previous``: the flows
    t -> t-1 and t-1 -> t (or None), and the frames the two pairs land in (``landed``:
    t+1, ``previous_image``: t-1; 8-bit gray or None)."""
    h, w = forward.shape[1:]
    gray = image.astype(np.float32) if image is not None else None
    lands = landing(forward)
    trust = flow_trust(forward, backward, params, lands, image)
    compensated = compensate(forward, trust.confident, params)
    fitted = compensated is not None
    relative = compensated.relative_flow if fitted else forward.copy()
    residual = compensated.residual if fitted else cv2.magnitude(forward[0], forward[1])
    noise = max(trust.noise or 0.0, NOISE_FLOOR_PX)
    percent = np.float32(100.0 / w)
    out = np.zeros((len(CHANNELS), h, w), np.float32)
    i = _INDEX
    out[i["relative_u"]], out[i["relative_v"]] = relative
    out[i["residual"]] = residual
    out[i["round_trip"]] = np.sqrt(trust.round_trip_sq) if backward is not None else 0.0
    _parallax(forward, trust.confident, params, out)
    noise_units = [i[c] for c in ("relative_u", "relative_v", "residual", "round_trip")]
    noise_units += [i[c] for c in ("parallax_along", "parallax_across")]
    out[noise_units] /= np.float32(noise)
    if previous is not None:
        back_trust = flow_trust(previous[0], previous[1], params, image=image)
        back = compensate(previous[0], back_trust.confident, params)
        if back is not None:
            back_noise = np.float32(max(back_trust.noise or 0.0, NOISE_FLOOR_PX))
            out[i["previous_u"]], out[i["previous_v"]] = back.relative_flow / back_noise
            out[i["previous_residual"]] = back.residual / back_noise
            out[i["previous_valid"]] = 1.0
            if gray is not None and previous_image is not None:
                camera = previous[0] - back.relative_flow
                out[i["previous_change"]] = _change(gray, previous_image, camera)
    if gray is not None and landed is not None:
        out[i["change"]] = _change(gray, landed, forward - relative)
    out[i["flow_u"]], out[i["flow_v"]] = forward * percent
    out[_SQUASHED] = np.arcsinh(out[_SQUASHED])
    out[i["trusted"]] = trust.confident
    if gray is not None:
        out[i["image"]] = _standardised(gray)
    xs, ys = pixel_grid(h, w)
    out[i["x"]] = xs * np.float32(2.0 / max(w - 1, 1)) - 1.0
    out[i["y"]] = ys * np.float32(2.0 / max(h - 1, 1)) - 1.0
    out[i["noise"]] = np.log10(noise * percent)
    return PairEvidence(out, trust.confident, relative, residual, fitted, lands, noise)
