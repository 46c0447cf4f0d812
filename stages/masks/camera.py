"""Camera-induced motion: a robust fit per frame pair, and every pixel's disagreement with it.

A static scene seen by a moving camera produces flow that a few camera parameters explain;
objects that move in the world do not fit. Each model is fitted robustly (RANSAC or LMedS,
OpenCV) on a subsample of confident correspondences, so moving objects are outliers of the
fit, then scores EVERY pixel with a residual in pixels:

- ``homography``: camera flow = H x - x; residual = transfer error |flow - camera flow|.
  Exact for a rotating camera or a planar scene; parallax of a translating camera over a
  3D scene shows up as residual.
- ``fundamental``: the epipolar constraint x2^T F x1 = 0; residual = Sampson distance.
  Exact for any static scene under any camera motion; blind to motion along epipolar
  lines (e.g. a car driving ahead of a forward-moving camera).

A model implements ``fit`` and ``residual`` on a ``PairGeometry``; a depth-based rigid
model (KITTI stereo/LiDAR) fits a 6-DoF ego-motion instead and reads ``PairGeometry.depth``:
nothing else in the pipeline changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from stages.masks.params import MotionParams

ROBUST_METHODS = {"ransac": cv2.RANSAC, "lmeds": cv2.LMEDS}
FLOW_GRID_STRIDE = 8


@lru_cache(maxsize=4)
def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel x and y coordinates (H, W) float32, cached per resolution (read-only)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


@dataclass
class PairGeometry:
    """What a camera model sees of one frame pair, all at the flow resolution.

    ``flow`` (2, H, W) float32 maps frame a's pixels to frame b; ``confident`` (H, W) bool
    marks pixels whose flow is trusted (inside the frame, forward-backward consistent);
    ``depth`` (H, W) of frame a is for rigid models and None otherwise.
    """

    flow: np.ndarray
    confident: np.ndarray
    depth: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.flow.shape[1:]


def sample_correspondences(
    geometry: PairGeometry, max_points: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(src, dst) float32 (N, 2) point pairs on a regular grid of confident pixels.

    A regular grid (not random pixels) spreads the points over the whole frame, which is
    what constrains a camera model, and keeps the fit deterministic.
    """
    h, w = geometry.shape
    stride = max(1, int(np.sqrt(h * w / max_points)))
    offset = stride // 2
    conf = geometry.confident[offset::stride, offset::stride]
    xs, ys = pixel_grid(h, w)
    xs = xs[offset::stride, offset::stride][conf]
    ys = ys[offset::stride, offset::stride][conf]
    if xs.size < 16:
        return None
    u = geometry.flow[0, offset::stride, offset::stride][conf]
    v = geometry.flow[1, offset::stride, offset::stride][conf]
    src = np.stack([xs, ys], axis=1)
    dst = np.stack([xs + u, ys + v], axis=1)
    return src, dst


class CameraModel(ABC):
    """A camera-motion model fitted to one frame pair."""

    name: str = ""
    #: whether ``camera_flow`` exists (a per-pixel predicted flow), not only a residual
    predicts_flow: bool = False

    def __init__(self, params: MotionParams):
        """The robust fit, its inlier threshold and sample count from ``params`` (checked
        there)."""
        self.robust = params.robust
        self.threshold = params.ransac_threshold
        self.max_points = params.max_points
        self.matrix: np.ndarray | None = None  # the fitted model

    @abstractmethod
    def fit(self, geometry: PairGeometry) -> bool:
        """Fit to the pair's confident correspondences; False if no model could be found."""

    @abstractmethod
    def residual(self, geometry: PairGeometry) -> np.ndarray:
        """(H, W) float32: how far, in pixels, each pixel's flow is from camera motion."""

    def camera_flow(self, geometry: PairGeometry) -> np.ndarray:
        """(2, H, W) float32 flow the fitted camera motion alone would produce."""
        raise NotImplementedError(f"the {self.name} model predicts no per-pixel flow")


class HomographyModel(CameraModel):
    name = "homography"
    predicts_flow = True

    def fit(self, geometry: PairGeometry) -> bool:
        pairs = sample_correspondences(geometry, self.max_points)
        if pairs is None:
            return False
        matrix, _inliers = cv2.findHomography(
            pairs[0],
            pairs[1],
            ROBUST_METHODS[self.robust],
            ransacReprojThreshold=self.threshold,
            maxIters=2000,
            confidence=0.995,
        )
        self.matrix = matrix
        return matrix is not None

    def camera_flow(self, geometry: PairGeometry) -> np.ndarray:
        """H x - x, evaluated every ``FLOW_GRID_STRIDE`` px and bilinearly interpolated.

        A homography's flow is smooth (its second derivatives are of order |flow|/W^2), so
        interpolating from an 8 px grid is exact to well under 0.01 px, at 1/64 of the cost
        of evaluating every pixel. The grid extends one cell beyond the frame so that no
        pixel is extrapolated (cv2.resize clamps at its borders).
        """
        h, w = geometry.shape
        s = FLOW_GRID_STRIDE
        gh, gw = -(-h // s) + 2, -(-w // s) + 2
        # pixel positions of the coarse cells when resized by s and cropped by s (below)
        xs = ((np.arange(gw) + 0.5) * s - 0.5 - s)[None, :]
        ys = ((np.arange(gh) + 0.5) * s - 0.5 - s)[:, None]
        m = self.matrix
        denom = m[2, 0] * xs + m[2, 1] * ys + m[2, 2]
        denom = np.where(np.abs(denom) < 1e-9, 1e-9, denom)
        cam_x = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / denom - xs
        cam_y = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / denom - ys
        out = np.empty((2, h, w), np.float32)
        for channel, coarse in enumerate((cam_x, cam_y)):
            fine = cv2.resize(
                coarse.astype(np.float32), (gw * s, gh * s), interpolation=cv2.INTER_LINEAR
            )
            out[channel] = fine[s : s + h, s : s + w]
        return out

    def residual(self, geometry: PairGeometry) -> np.ndarray:
        cam = self.camera_flow(geometry)
        return cv2.magnitude(geometry.flow[0] - cam[0], geometry.flow[1] - cam[1])


class FundamentalModel(CameraModel):
    name = "fundamental"

    def fit(self, geometry: PairGeometry) -> bool:
        pairs = sample_correspondences(geometry, self.max_points)
        if pairs is None:
            return False
        method = cv2.FM_RANSAC if self.robust == "ransac" else cv2.FM_LMEDS
        matrix, _inliers = cv2.findFundamentalMat(
            pairs[0], pairs[1], method, self.threshold, 0.995, 2000
        )
        if matrix is None or matrix.shape != (3, 3):  # 7-point can return 3 stacked solutions
            self.matrix = None
            return False
        self.matrix = matrix
        return True

    def residual(self, geometry: PairGeometry) -> np.ndarray:
        """Sampson distance, evaluated in centred coordinates scaled to ~[-1, 1].

        Pixel coordinates near 1000 make x2^T F x1 a difference of large float32 terms;
        in normalised coordinates (x = s*x' + c for both images) the same distance is
        computed stably and scales back to pixels by s.
        """
        h, w = geometry.shape
        scale = max(h, w) / 2.0
        to_pixels = np.array([[scale, 0, (w - 1) / 2], [0, scale, (h - 1) / 2], [0, 0, 1]])
        f = (to_pixels.T @ self.matrix @ to_pixels).astype(np.float32)
        f /= np.float32(np.abs(f).max())
        xs, ys = normalised_grid(h, w)
        inv = np.float32(1.0 / scale)
        x2 = xs + geometry.flow[0] * inv
        y2 = ys + geometry.flow[1] * inv
        a = f[0, 0] * xs + f[0, 1] * ys + f[0, 2]  # F x1: the epipolar line in frame b
        b = f[1, 0] * xs + f[1, 1] * ys + f[1, 2]
        c = f[2, 0] * xs + f[2, 1] * ys + f[2, 2]
        d = f[0, 0] * x2 + f[1, 0] * y2 + f[2, 0]  # F^T x2: the epipolar line in frame a
        e = f[0, 1] * x2 + f[1, 1] * y2 + f[2, 1]
        numerator = np.abs(x2 * a + y2 * b + c)
        denominator = np.sqrt(a * a + b * b + d * d + e * e)
        np.maximum(denominator, np.float32(1e-12), out=denominator)
        return numerator / denominator * np.float32(scale)


@lru_cache(maxsize=4)
def normalised_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates centred and divided by max(H, W)/2 (the Sampson frame)."""
    xs, ys = pixel_grid(height, width)
    scale = max(height, width) / 2.0
    nx = ((xs - (width - 1) / 2) / scale).astype(np.float32)
    ny = ((ys - (height - 1) / 2) / scale).astype(np.float32)
    nx.flags.writeable = False
    ny.flags.writeable = False
    return nx, ny


CAMERA_MODELS: dict[str, type[CameraModel]] = {
    cls.name: cls for cls in (HomographyModel, FundamentalModel)
}


def make_camera_model(params: MotionParams) -> CameraModel:
    """The camera-motion model ``params.camera_model`` names."""
    return CAMERA_MODELS[params.camera_model](params)
