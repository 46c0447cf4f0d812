"""Per-pixel motion evidence for one frame pair: which pixels move relative to the camera.

A pixel is called moving when its flow disagrees with the fitted camera motion by more than
the largest of four thresholds:
- ``noise_k`` x the flow's own noise (its median forward-backward round-trip error): what
  the flow can resolve at this resolution, frame rate and flow method;
- ``min_residual`` pixels: a floor for clean flow (exact, or without backward flow);
- ``rel_residual`` x |flow|: flow error grows with displacement;
- median + ``adaptive_k`` x robust sigma (1.4826 x MAD) of the frame's residuals: a frame
  whose flow is poor everywhere (blur, low texture) needs more evidence than a clean one.
Pixels whose flow cannot be trusted (it leaves the frame, sits on an untextured patch, or
fails the forward-backward check when backward flow exists) are never moving and never feed
the camera fit: precision matters more than recall, because only matched masks supervise.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from stages.masks.camera import MAD_TO_SIGMA, PairGeometry, make_camera_model, pixel_grid
from stages.masks.params import MotionParams

ADAPTIVE_SAMPLES = 20000
BACKGROUND_BLOCKS = 7
TEXTURE_WINDOW = 5


@dataclass
class PairMotion:
    """Result for one frame pair: ``moving`` (H, W) bool, and what it was decided from."""

    moving: np.ndarray
    residual: np.ndarray
    confident: np.ndarray
    #: (2, H, W) flow against the camera motion (``CameraModel.relative_flow``), less the
    #: local background where it applies: what merged objects are split on
    relative_flow: np.ndarray
    camera_fitted: bool
    #: where the first frame's pixels land in the second (``landing``), for warping masks
    lands: tuple[np.ndarray, np.ndarray]


def landing(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel lands in the other frame: (x + u, y + v), float32 maps for remap."""
    xs, ys = pixel_grid(*flow.shape[1:])
    return xs + flow[0], ys + flow[1]


@dataclass
class FlowTrust:
    """Which pixels' flow can be trusted, and how noisy the flow is: what a pair's flow
    says about itself."""

    #: (H, W) bool: inside the frame, on texture (if the frame is known) and consistent with
    #: the backward flow (if known)
    confident: np.ndarray
    #: median forward-backward round-trip error over the pixels that stay in the frame, px;
    #: None without backward flow. On our data it tracks the median error against the true
    #: flow (correlation 0.83-0.91 over frames, at about 0.6x of it; docs/masks.md).
    noise: float | None
    #: (H, W) squared forward-backward round-trip error |f + b(x + f)|^2, px^2; None
    #: without backward flow
    round_trip_sq: np.ndarray | None = None


def textured(image: np.ndarray, frac: float) -> np.ndarray:
    """(H, W) bool: where the image constrains flow in both directions.

    A patch without texture (a plain wall, the sky, a road worn smooth) lets a flow method
    return any flow, and DIS returns smooth, forward-backward consistent nonsense there:
    on our still-camera videos most false masks sat on such regions. The smaller eigenvalue
    of the structure tensor measures texture in both directions; comparing it with the
    frame's median makes the test independent of contrast and exposure (and of OpenCV's
    scaling of 8-bit input, 1/255^2 of the float result, which is 2.7x faster to compute).
    """
    eigen = cv2.cornerMinEigenVal(image, TEXTURE_WINDOW, ksize=3)
    stride = max(1, int(np.sqrt(eigen.size / ADAPTIVE_SAMPLES)))
    return eigen > np.float32(frac * float(np.median(eigen[::stride, ::stride])))


def flow_trust(
    forward: np.ndarray,
    backward: np.ndarray | None,
    params: MotionParams,
    lands: tuple[np.ndarray, np.ndarray] | None = None,
    image: np.ndarray | None = None,
) -> FlowTrust:
    """The flow stays inside the frame, (if known) agrees with the backward flow, and (if
    the frame ``image``, 8-bit gray at the flow's size, is given) sits on texture.

    Forward-backward test (Sundaram et al. 2010): following f then the backward flow at the
    landing point returns home, |f + b(x + f)|^2 <= alpha (|f|^2 + |b|^2) + beta; occluded
    and mismatched pixels fail it.
    """
    h, w = forward.shape[1:]
    tx, ty = lands if lands is not None else landing(forward)
    inside = (cv2.inRange(tx, 0.0, w - 1.0) & cv2.inRange(ty, 0.0, h - 1.0)) > 0
    trusted = inside
    if image is not None and params.texture_frac > 0:
        trusted = inside & textured(image, params.texture_frac)
    if backward is None:
        return FlowTrust(trusted, None)
    # fixed-point maps (1/32 px): converted once, they make both remaps cheaper
    map1, map2 = cv2.convertMaps(tx, ty, cv2.CV_16SC2)
    bu = cv2.remap(backward[0], map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    bv = cv2.remap(backward[1], map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # in place where possible: at 375x1242 every temporary costs about a millisecond
    tolerance = forward[0] * forward[0]
    tolerance += forward[1] * forward[1]
    tolerance += bu * bu
    tolerance += bv * bv
    tolerance *= np.float32(params.fb_alpha)
    tolerance += np.float32(params.fb_beta)
    bu += forward[0]
    bv += forward[1]
    np.multiply(bu, bu, out=bu)
    np.multiply(bv, bv, out=bv)
    bu += bv  # |f + b|^2
    stride = max(1, int(np.sqrt(bu.size / ADAPTIVE_SAMPLES)))
    sample = bu[::stride, ::stride][inside[::stride, ::stride]]
    noise = float(np.sqrt(np.median(sample))) if sample.size else None
    return FlowTrust(trusted & (bu <= tolerance), noise, bu)


def adaptive_threshold(residual: np.ndarray, confident: np.ndarray, k: float) -> float:
    """median + k * robust sigma of the residuals of confident pixels (a strided sample)."""
    stride = max(1, int(np.sqrt(residual.size / ADAPTIVE_SAMPLES)))
    values = residual[::stride, ::stride][confident[::stride, ::stride]]
    if values.size == 0:
        return float("inf")
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    return median + k * MAD_TO_SIGMA * mad


def _block_edges(size: int, blocks: int) -> np.ndarray:
    """Start of each of ``blocks`` whole-pixel blocks covering ``size`` pixels (at the pixel
    nearest to i * size / blocks)."""
    return np.linspace(0, size, blocks + 1).round().astype(np.intp)[:-1]


def _block_sums(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sums of (H, W) over the blocks starting at ``rows`` x ``cols``: what an area resize
    averages, without its fractional edge weights, which make OpenCV's INTER_AREA 5x slower
    at a non-integer ratio (1.5 ms a channel at 375x1242)."""
    return np.add.reduceat(np.add.reduceat(image, rows, axis=0), cols, axis=1)


def local_background(field: np.ndarray, confident: np.ndarray, window: float) -> np.ndarray:
    """The slowly varying part of a residual field (C, H, W): what a camera model with a few
    parameters leaves over a static scene of several depths (ground plane vs far backdrop,
    a wall), which differs from one image region to the next but not within an object.

    Robust and cheap: means of confident pixels in blocks of window/7 px, a 7x7-block
    median filter (objects smaller than half a window do not shift it), bilinear upsampling.
    ``window`` is a fraction of the frame width; blocks with too few confident pixels take
    the median of the others.
    """
    _channels, h, w = field.shape
    block = max(2, int(round(window * w / BACKGROUND_BLOCKS)))
    gh, gw = max(1, h // block), max(1, w // block)
    weight = confident.astype(np.float32)
    rows, cols = _block_edges(h, gh), _block_edges(w, gw)
    confident_count = _block_sums(weight, rows, cols)
    block_area = np.outer(np.diff(rows, append=h), np.diff(cols, append=w))
    valid = confident_count > 0.25 * block_area
    out = np.empty_like(field)
    for c, channel in enumerate(field):
        coarse = _block_sums(channel * weight, rows, cols)
        coarse = np.divide(coarse, confident_count, out=np.zeros_like(coarse), where=valid)
        if valid.any():
            coarse[~valid] = np.median(coarse[valid])
        smooth = ndimage.median_filter(coarse, size=BACKGROUND_BLOCKS, mode="nearest")
        out[c] = cv2.resize(smooth, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


@dataclass
class Compensated:
    """A pair's flow against the fitted camera motion."""

    #: (2, H, W) flow against the camera motion (``CameraModel.relative_flow``), less the
    #: local background where it applies
    relative_flow: np.ndarray
    #: (H, W) how far each pixel's flow is from camera motion, px
    residual: np.ndarray


def compensate(
    forward: np.ndarray,
    confident: np.ndarray,
    params: MotionParams,
    depth: np.ndarray | None = None,
) -> Compensated | None:
    """Fit ``params.camera_model`` on the confident pixels and score every pixel against
    it; None when no camera model could be fitted."""
    geometry = PairGeometry(flow=forward, confident=confident, depth=depth)
    model = make_camera_model(params)
    cv2.setRNGSeed(params.seed)  # RANSAC/LMedS sampling: same input, same model
    if not model.fit(geometry):
        return None
    relative = model.relative_flow(geometry)
    subtract_background = model.smooth_leftover and params.background_window > 0
    if model.predicts_flow:
        if subtract_background:
            relative -= local_background(relative, confident, params.background_window)
        residual = cv2.magnitude(relative[0], relative[1])
    else:
        residual = model.residual(geometry)
        if subtract_background:
            background = local_background(residual[None], confident, params.background_window)
            residual = np.maximum(residual - background[0], 0)
    return Compensated(relative, residual)


def pair_motion(
    forward: np.ndarray,
    backward: np.ndarray | None,
    params: MotionParams,
    depth: np.ndarray | None = None,
    image: np.ndarray | None = None,
) -> PairMotion:
    """Moving pixels of the first frame of a pair, from its flow (2, H, W) float32 (and the
    frame itself, 8-bit gray at the flow's size, when known: ``flow_trust``)."""
    lands = landing(forward)
    trust = flow_trust(forward, backward, params, lands, image)
    confident = trust.confident
    compensated = compensate(forward, confident, params, depth)
    if compensated is None:
        empty = np.zeros(confident.shape, bool)
        zeros = np.zeros(confident.shape, np.float32)
        return PairMotion(empty, zeros, confident, forward, False, lands)
    residual = compensated.residual
    magnitude = cv2.magnitude(forward[0], forward[1])
    floor = max(params.min_residual, adaptive_threshold(residual, confident, params.adaptive_k))
    if trust.noise is not None:
        floor = max(floor, params.noise_k * trust.noise)
    threshold = np.maximum(np.float32(params.rel_residual) * magnitude, np.float32(floor))
    moving = (residual > threshold) & confident
    return PairMotion(moving, residual, confident, compensated.relative_flow, True, lands)
