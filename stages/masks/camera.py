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
- ``parallax``: the ground plane's homography, then the distance of what is left from the
  parallax a static point above the ground can have (away from the epipole, along its
  line): exact for a static scene above a ground plane, and it sees a car ahead that
  keeps its distance (``ParallaxModel``).

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

MAD_TO_SIGMA = 1.4826
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
    geometry: PairGeometry, max_points: int, first_row: int = 0
) -> tuple[np.ndarray, np.ndarray] | None:
    """(src, dst) float32 (N, 2) point pairs on a regular grid of confident pixels of rows
    ``first_row`` and below.

    A regular grid (not random pixels) spreads the points over the whole region, which is
    what constrains a camera model, and keeps the fit deterministic.
    """
    h, w = geometry.shape
    stride = max(1, int(np.sqrt((h - first_row) * w / max_points)))
    grid = (slice(first_row + stride // 2, None, stride), slice(stride // 2, None, stride))
    conf = geometry.confident[grid]
    xs, ys = pixel_grid(h, w)
    xs, ys = xs[grid][conf], ys[grid][conf]
    if xs.size < 16:
        return None
    u = geometry.flow[0][grid][conf]
    v = geometry.flow[1][grid][conf]
    src = np.stack([xs, ys], axis=1)
    dst = np.stack([xs + u, ys + v], axis=1)
    return src, dst


class CameraModel(ABC):
    """A camera-motion model fitted to one frame pair."""

    name: str = ""
    #: whether ``camera_flow`` exists (a per-pixel predicted flow), not only a residual
    predicts_flow: bool = False
    #: whether what the model leaves over a static 3-D scene varies slowly across the image
    #: (then ``motion.local_background`` removes it); False when it is already zero there
    smooth_leftover: bool = True

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

    def relative_flow(self, geometry: PairGeometry) -> np.ndarray:
        """(2, H, W) float32 flow of each pixel against the camera motion, what merged
        objects are split on: flow minus camera flow, or the raw flow when the model
        predicts none."""
        if self.predicts_flow:
            return geometry.flow - self.camera_flow(geometry)
        return geometry.flow


class HomographyModel(CameraModel):
    name = "homography"
    predicts_flow = True

    def fit(self, geometry: PairGeometry) -> bool:
        pairs = sample_correspondences(geometry, self.max_points)
        return pairs is not None and self.fit_pairs(*pairs)

    def fit_pairs(self, src: np.ndarray, dst: np.ndarray) -> bool:
        """Fit to point pairs (N, 2); False if no homography could be found."""
        matrix, _inliers = cv2.findHomography(
            src,
            dst,
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

    def camera_flow_at(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) flow of the homography at points (N, 2)."""
        mapped = cv2.perspectiveTransform(points[None].astype(np.float64), self.matrix)[0]
        return (mapped - points).astype(np.float32)

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


class ParallaxModel(CameraModel):
    """Plane + parallax (Irani & Anandan 1998): the flow a static 3-D scene leaves after
    the ground plane's homography is removed points along the line through the epipole,
    away from it for every point above the ground, by an amount that grows with height
    over depth. The residual of a pixel is its distance to that half-line of allowed
    parallax: sideways from the epipolar line (crossing traffic) or towards the epipole
    (a car ahead that keeps its distance, or pulls away: it flows less than the road it
    stands on, like a point below the ground). Facades, trees and poles at any depth stay
    on the half-line and score zero however large their parallax.

    - The plane is fitted on the lower half of the frame: the road in driving footage,
      the ground in most others; any plane in a scene without depth (then the parallax is
      noise everywhere and the model falls back to |parallax|).
    - The epipole comes from the parallax vectors themselves (each one is a line through
      it), by RANSAC over pairs and least squares on the inliers; only vectors well above
      the flow's noise take part.
    - Without a coherent translation (a still or purely rotating camera: too few vectors
      above the noise, or no epipole that most of them agree on) the residual is the
      parallax magnitude, as the homography model's.
    """

    name = "parallax"
    smooth_leftover = False
    #: parallax vectors above this many noise sigmas define the epipole
    EPIPOLE_SIGMAS = 4.0
    #: RANSAC hypotheses (pairs of parallax lines) for the epipole
    EPIPOLE_HYPOTHESES = 256
    #: parallax vectors each hypothesis is scored on
    EPIPOLE_SCORED = 512
    #: an epipole is accepted when this share of the strong parallax vectors agrees with it
    EPIPOLE_SUPPORT = 0.5
    #: ... and vectors above the noise make up at least this share of the frame's samples
    #: (a still camera's only strong vectors are its movers: they must not define an epipole)
    EPIPOLE_MIN_SHARE = 0.1

    def __init__(self, params: MotionParams):
        super().__init__(params)
        self.plane = HomographyModel(params)
        self.seed = params.seed
        #: epipole (x, y) of the parallax field in frame a's pixels, None: no translation
        self.epipole: np.ndarray | None = None
        #: robust sigma of the parallax on the ground (the flow's noise), px
        self.noise = 0.0
        self._parallax: np.ndarray | None = None

    def fit(self, geometry: PairGeometry) -> bool:
        h = geometry.shape[0]
        pairs = sample_correspondences(geometry, self.max_points, first_row=h // 2)
        if pairs is None or not self.plane.fit_pairs(*pairs):
            return False
        self._parallax = geometry.flow - self.plane.camera_flow(geometry)
        # grid samples of the whole frame: where the epipole and the noise are read from
        src, dst = sample_correspondences(geometry, 4 * self.max_points) or (None, None)
        if src is None:
            return False
        parallax = dst - src - self.plane.camera_flow_at(src)
        ground = src[:, 1] >= h // 2
        self.noise = (
            MAD_TO_SIGMA * float(np.median(np.abs(parallax[ground]))) if ground.any() else 0.0
        )
        self.epipole = self._fit_epipole(src, parallax)
        return True

    def _fit_epipole(self, points: np.ndarray, parallax: np.ndarray) -> np.ndarray | None:
        """RANSAC over pairs of parallax lines, then least squares on the inliers."""
        length = np.hypot(parallax[:, 0], parallax[:, 1])
        strong = length > self.EPIPOLE_SIGMAS * max(self.noise, 1e-3)
        if strong.sum() < max(self.EPIPOLE_MIN_SHARE * len(strong), 8):
            return None
        p = points[strong].astype(np.float64)
        m = parallax[strong].astype(np.float64)
        n = np.stack([-m[:, 1], m[:, 0]], axis=1) / length[strong, None]  # unit line normals
        offset = (n * p).sum(axis=1)  # line i: n_i . e = offset_i
        rng = np.random.default_rng(self.seed)
        i, j = rng.integers(0, len(p), size=(2, self.EPIPOLE_HYPOTHESES))
        a = np.stack([n[i], n[j]], axis=1)  # (K, 2, 2)
        det = np.linalg.det(a)
        ok = np.abs(det) > 1e-3
        if not ok.any():
            return None
        rhs = np.stack([offset[i], offset[j]], axis=1)[ok, :, None]
        hypotheses = np.linalg.solve(a[ok], rhs)[..., 0]
        tolerance = np.maximum(2.0 * self.noise, 0.1 * length[strong])
        # hypotheses are scored on an even subsample (enough to rank them), the best one's
        # inliers are taken from all vectors
        scored = slice(None, None, max(1, len(p) // self.EPIPOLE_SCORED))
        votes = self._agreeing(hypotheses, p[scored], m[scored], tolerance[scored])
        best = hypotheses[int(np.argmax(votes.sum(axis=1)))]
        inliers = self._agreeing(best[None], p, m, tolerance)[0]
        if inliers.sum() < self.EPIPOLE_SUPPORT * len(p):
            return None
        epipole, *_ = np.linalg.lstsq(n[inliers], offset[inliers], rcond=None)
        return epipole

    @staticmethod
    def _agreeing(
        epipoles: np.ndarray, points: np.ndarray, parallax: np.ndarray, tolerance: np.ndarray
    ) -> np.ndarray:
        """(K, N) bool: vector n lies on the line from epipole k through its point, pointing
        away from it as the majority of vectors agreeing with k do."""
        ax = (points[None, :, 0] - epipoles[:, None, 0]).astype(np.float32)  # (K, N)
        ay = (points[None, :, 1] - epipoles[:, None, 1]).astype(np.float32)
        mx, my = parallax[:, 0].astype(np.float32), parallax[:, 1].astype(np.float32)
        across = ax * my - ay * mx
        along = ax * mx + ay * my
        # |across| / |away| < tolerance, without a square root
        on_line = across * across < (tolerance.astype(np.float32) ** 2) * (ax * ax + ay * ay)
        outward = on_line & (along > 0)
        inward = on_line & (along < 0)
        flip = inward.sum(axis=1) > outward.sum(axis=1)
        return np.where(flip[:, None], inward, outward)

    def relative_flow(self, geometry: PairGeometry) -> np.ndarray:
        """The flow left after the ground plane's: parallax plus independent motion."""
        return self._parallax

    def epipolar_components(
        self, geometry: PairGeometry
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Each pixel's parallax split along the line from the epipole (positive: the way
        static parallax points) and across it (signed), and the pixel's distance from the
        epipole, (H, W) float32 px each; None without an epipole."""
        if self.epipole is None:
            return None
        mu = self._parallax
        h, w = geometry.shape
        xs, ys = pixel_grid(h, w)
        dx = xs - np.float32(self.epipole[0])
        dy = ys - np.float32(self.epipole[1])
        dist = cv2.magnitude(dx, dy)
        np.maximum(dist, np.float32(1e-6), out=dist)
        along = (mu[0] * dx + mu[1] * dy) / dist
        along *= np.float32(self._orientation(along, geometry.confident))
        across = (mu[0] * dy - mu[1] * dx) / dist
        return along, across, dist

    def residual(self, geometry: PairGeometry) -> np.ndarray:
        """Distance of each pixel's parallax from the half-line a static point may take."""
        mu = self._parallax
        magnitude = cv2.magnitude(mu[0], mu[1])
        components = self.epipolar_components(geometry)
        if components is None:
            return magnitude
        along, across, _dist = components
        return np.where(along >= 0, np.abs(across), magnitude)

    @staticmethod
    def _orientation(along: np.ndarray, confident: np.ndarray) -> float:
        """+1 when static parallax points away from the epipole (forward motion), -1 when
        towards it: the sign most confident pixels' parallax takes."""
        values = along[confident]
        return 1.0 if (values > 0).sum() >= (values < 0).sum() else -1.0


CAMERA_MODELS: dict[str, type[CameraModel]] = {
    cls.name: cls for cls in (HomographyModel, FundamentalModel, ParallaxModel)
}


def make_camera_model(params: MotionParams) -> CameraModel:
    """The camera-motion model ``params.camera_model`` names."""
    return CAMERA_MODELS[params.camera_model](params)
