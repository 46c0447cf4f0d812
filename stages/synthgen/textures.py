"""Photographs shipped inside scikit-image, and mip-mapped texture sampling.

Only images stored in the scikit-image wheel are used (each was checked to load without
network access; ``brain``, ``eagle``, ``skin``, ... need pooch downloads and are excluded).
Textures are sampled with trilinear mip-mapping so that a surface seen at a shrinking
scale (the ground towards the horizon, an object driving away) is filtered, not aliased:
aliasing would make the same surface look different from frame to frame and the ground-
truth flow would no longer explain the images.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np
import skimage.data

#: source name -> loader; all are files inside the scikit-image package (offline)
PHOTOS = {
    "astronaut": skimage.data.astronaut,
    "brick": skimage.data.brick,
    "camera": skimage.data.camera,
    "chelsea": skimage.data.chelsea,
    "coffee": skimage.data.coffee,
    "coins": skimage.data.coins,
    "grass": skimage.data.grass,
    "gravel": skimage.data.gravel,
    "hubble_deep_field": skimage.data.hubble_deep_field,
    "immunohistochemistry": skimage.data.immunohistochemistry,
    "moon": skimage.data.moon,
    "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
    "page": skimage.data.page,
    "rocket": skimage.data.rocket,
    "text": skimage.data.text,
}


@cache
def photo(name: str) -> np.ndarray:
    """A photograph as (H, W, 3) float32 RGB in [0, 1] (grey ones replicated)."""
    img = np.asarray(PHOTOS[name]())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3], dtype=np.float32) / 255.0


def crop(
    rng: np.random.Generator,
    name: str,
    aspect: float,
    size: tuple[int, int],
    min_frac: float,
    region: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 1.0),
    bottom: bool = False,
) -> np.ndarray:
    """A random crop of a photo with width/height = ``aspect``, resized to ``size`` (h, w).

    ``min_frac`` is the smallest crop side as a fraction of the largest crop that fits, so
    crops vary in scale (the same photo gives different-looking surfaces). ``region``
    (top, bottom, left, right as fractions) restricts the crop to part of the photo;
    ``bottom`` keeps the crop on the region's bottom edge (where scenery meets the ground).
    The crop is resized to ``size``, so a ``size`` of another aspect stretches it.
    """
    img = photo(name)
    rows = slice(int(region[0] * img.shape[0]), int(region[1] * img.shape[0]))
    img = img[rows, int(region[2] * img.shape[1]) : int(region[3] * img.shape[1])]
    h, w = img.shape[:2]
    full_w = min(w, h * aspect)
    cw = full_w * rng.uniform(min_frac, 1.0)
    ch = cw / aspect
    x0 = rng.uniform(0, w - cw)
    y0 = h - ch if bottom else rng.uniform(0, h - ch)
    part = img[int(y0) : int(y0 + ch) + 1, int(x0) : int(x0 + cw) + 1]
    return cv2.resize(part, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def _mirror(x: np.ndarray, n: int) -> np.ndarray:
    """Mirror-repeat texel coordinates (pixel centres at integers) into [-0.5, n - 0.5]."""
    edge = np.mod(x + 0.5, 2 * n)
    return np.where(edge > n, 2 * n - edge, edge) - 0.5


MAP_COLUMNS = 1024


def _as_map(values: np.ndarray) -> np.ndarray:
    """Any array of lookups as a 2-D map OpenCV accepts (it limits sides to 32767)."""
    flat = values.ravel()
    rows = -(-flat.size // MAP_COLUMNS)
    return np.pad(flat, (0, rows * MAP_COLUMNS - flat.size), mode="edge").reshape(rows, MAP_COLUMNS)


class Texture:
    """An RGB image with its Gaussian pyramid, sampled with mirror repeat.

    Sizes are rounded to a multiple of 2**(levels-1) so every level is an exact halving
    and texel coordinates map between levels by one formula.
    """

    def __init__(self, image: np.ndarray, levels: int = 1):
        self.levels = max(1, min(levels, int(np.log2(min(image.shape[:2]))) - 1))
        step = 2 ** (self.levels - 1)
        h = max(step, int(round(image.shape[0] / step)) * step)
        w = max(step, int(round(image.shape[1] / step)) * step)
        if (h, w) != image.shape[:2]:
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        self.pyramid = [np.ascontiguousarray(image, dtype=np.float32)]
        for _ in range(self.levels - 1):
            self.pyramid.append(cv2.pyrDown(self.pyramid[-1]))

    @property
    def shape(self) -> tuple[int, int]:
        return self.pyramid[0].shape[:2]

    def sample(self, x: np.ndarray, y: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Colours (..., 3) at level-0 texel coordinates, filtered for ``footprint``.

        ``footprint`` is the number of level-0 texels one output pixel covers; the mip
        level is log2 of it, blended linearly between the two nearest levels.
        """
        shape = x.shape
        h, w = self.shape
        x, y, footprint = (_as_map(a) for a in (_mirror(x, w), _mirror(y, h), footprint))
        lod = np.clip(np.log2(np.maximum(footprint, 1.0)), 0, self.levels - 1)
        out = np.zeros((*x.shape, 3), np.float32)
        for level in range(int(lod.min()), min(int(lod.max()) + 2, self.levels)):
            weight = np.clip(1.0 - np.abs(lod - level), 0.0, 1.0).astype(np.float32)
            if not weight.any():
                continue
            scale = 2.0**-level
            mx = ((x + 0.5) * scale - 0.5).astype(np.float32)
            my = ((y + 0.5) * scale - 0.5).astype(np.float32)
            img = self.pyramid[level]
            out += weight[..., None] * cv2.remap(
                img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
        return out.reshape(-1, 3)[: int(np.prod(shape))].reshape(*shape, 3)
