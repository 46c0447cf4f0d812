"""Textures of the street world, from the photographs shipped with scikit-image.

Every surface gets real photographic texture (tinted), because optical flow needs
something to track, and painted structure where real streets have it: lane markings and a
zebra crossing on the road, paving joints, windows on facades, a tyre band on cars. Each
function returns an RGB image and the metres one of its pixels covers, for ``Look.of``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from stages.synthgen.families import BODY_COLOURS, CLOTHES
from stages.synthgen.textures import crop, luminance

Image = np.ndarray
#: road, sidewalk and facade detail, metres per texel (a few cm: finer than a pixel nearby)
GROUND_TEXEL_M = 0.04
FACADE_TEXEL_M = 0.06
OBJECT_TEXEL_M = 0.02
SKIN = ((0.85, 0.65, 0.5), (0.6, 0.42, 0.3), (0.4, 0.28, 0.2), (0.95, 0.78, 0.65))
WALLS = ((0.72, 0.45, 0.35), (0.8, 0.76, 0.66), (0.6, 0.6, 0.62), (0.85, 0.82, 0.75))
SIGNS = ((0.8, 0.1, 0.1), (0.1, 0.25, 0.7), (0.95, 0.8, 0.1), (0.95, 0.95, 0.95))


def _detail(rng: np.random.Generator, name: str, size: tuple[int, int], min_frac: float) -> Image:
    """A photo crop's luminance normalised to mean 1: texture without the photo's colour."""
    tex = crop(rng, name, size[1] / size[0], size, min_frac=min_frac)
    lum = luminance(tex)
    return lum / max(float(lum.mean()), 1e-3)


def _tint(detail: Image, colour, contrast: float) -> Image:
    return np.asarray(colour, np.float32) * (1 - contrast + contrast * detail)[..., None]


def _stains(rng: np.random.Generator, size: tuple[int, int], cells: int, depth: float) -> Image:
    """A smooth random brightness field: wear, dirt, patches."""
    field = rng.uniform(1 - depth, 1 + depth, (cells, cells)).astype(np.float32)
    return cv2.resize(field, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)[..., None]


def _px(metres: float, texel: float) -> int:
    return max(1, int(round(metres / texel)))


def road(rng: np.random.Generator, edges: tuple[float, float], lanes: int, lane_w: float):
    """Asphalt across the road (from its left edge at ``edges[0]`` to its right edge) over a
    12 m tile along it: a dashed centre line, dashed lane lines, solid edge lines."""
    texel = GROUND_TEXEL_M
    size = (_px(12.0, texel), _px(edges[1] - edges[0], texel))
    grey = rng.uniform(0.25, 0.4)
    image = _tint(_detail(rng, "gravel", size, 0.5), (grey, grey, grey * 1.04), 0.5)
    image *= _stains(rng, size, 5, 0.15)
    paint = np.float32(rng.uniform(0.75, 0.9))
    line = _px(0.12, texel)
    rows = np.arange(size[0]) * texel
    dashes = (rows % 6.0) < 3.0
    for k in range(-lanes, lanes + 1):  # lane boundaries, 0 = centre line
        col = _px(k * lane_w - edges[0], texel)
        if not 0 < col < size[1] - line:
            continue
        where = dashes if abs(k) < lanes else np.ones_like(dashes)
        image[where, col - line // 2 : col + line // 2 + 1] = paint
    return image, texel


def zebra(rng: np.random.Generator, width_m: float, depth_m: float):
    """A zebra crossing: white bars along the road (0.5 m wide, 0.5 m apart) over asphalt."""
    texel = GROUND_TEXEL_M
    size = (_px(depth_m, texel), _px(width_m, texel))
    grey = rng.uniform(0.25, 0.4)
    image = _tint(_detail(rng, "gravel", size, 0.5), (grey, grey, grey), 0.5)
    cols = np.arange(size[1]) * texel
    bars = (cols % 1.0) < 0.5
    image[:, bars] = image[:, bars] * 0.3 + np.float32(0.85) * 0.7
    return image, texel


def paving(rng: np.random.Generator):
    """Sidewalk slabs: brick or gravel photo texture, light grey or beige, with joints."""
    texel = GROUND_TEXEL_M
    size = (256, 256)
    tone = rng.uniform(0.55, 0.75)
    colour = (tone, tone * rng.uniform(0.93, 1.0), tone * rng.uniform(0.85, 1.0))
    image = _tint(_detail(rng, ("brick", "gravel")[rng.integers(2)], size, 0.4), colour, 0.4)
    slab = _px(rng.uniform(0.4, 0.8), texel)
    joints = (np.arange(size[0]) % slab == 0)[:, None] | (np.arange(size[1]) % slab == 0)[None]
    image[joints] *= 0.75
    return image * _stains(rng, size, 4, 0.12), texel


def plain(rng: np.random.Generator, photo: str, colour, contrast: float, texel: float):
    """A tinted photo texture (curb stone, earth, bark, metal, foliage)."""
    image = _tint(_detail(rng, photo, (128, 128), 0.3), colour, contrast)
    return image * _stains(rng, (128, 128), 3, 0.1), texel


def facade(rng: np.random.Generator, width_m: float, height_m: float):
    """A building front: wall texture, storeys of windows, a shop floor of big windows."""
    texel = FACADE_TEXEL_M
    size = (_px(height_m, texel), _px(width_m, texel))
    wall = np.asarray(WALLS[rng.integers(len(WALLS))]) * rng.uniform(0.8, 1.1)
    photo = ("brick", "gravel", "moon")[rng.integers(3)]
    image = _tint(_detail(rng, photo, size, 0.3), wall, 0.5) * _stains(rng, size, 4, 0.1)
    glass = _tint(_detail(rng, ("camera", "rocket")[rng.integers(2)], size, 0.5), (0.16,) * 3, 0.6)
    storey = rng.uniform(2.8, 3.5)
    bay = rng.uniform(2.2, 3.6)
    window_w, window_h = bay * rng.uniform(0.35, 0.6), storey * rng.uniform(0.4, 0.6)
    x = (np.arange(size[1]) + 0.5) * texel
    y = height_m - (np.arange(size[0]) + 0.5) * texel  # height above the ground
    in_bay = np.abs((x % bay) - bay / 2) < window_w / 2
    in_storey = np.abs((y % storey) - storey * 0.55) < window_h / 2
    windows = in_storey[:, None] & in_bay[None] & (y[:, None] > storey)
    shop = (y[:, None] > 0.3) & (y[:, None] < storey * 0.8) & (np.abs((x % 6.0) - 3.0) < 2.3)
    if rng.random() < 0.5:  # a shop floor
        windows |= shop
    frames = cv2.dilate(windows.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    image[frames & ~windows] = image[frames & ~windows] * 0.55
    image[windows] = glass[windows]
    return image[::-1], texel  # row 0 at the ground, as boxes map it


def sky(rng: np.random.Generator, radius_m: float):
    """Sky on the dome: a blue-to-pale gradient from the zenith to the horizon with clouds
    (a moon or hubble crop as soft structure); 0.005 rad per texel, 0.9 rad of azimuth
    mirrored around."""
    rad = 0.005
    size = (_px(math.pi / 2 + 0.2, rad), _px(0.9, rad))
    t = np.linspace(0.0, 1.0, size[0], dtype=np.float32)[:, None, None]
    zenith = np.array([0.35, 0.5, 0.8], np.float32) * rng.uniform(0.85, 1.1)
    horizon = np.array([0.8, 0.85, 0.9], np.float32)
    image = zenith * (1 - t) + horizon * t
    clouds = _detail(rng, ("moon", "hubble_deep_field")[rng.integers(2)], size, 0.5)
    cover = np.clip((clouds - 0.9) * rng.uniform(0.5, 1.5), 0, 1)[..., None]
    image = image * (1 - cover) + 0.92 * cover
    return np.broadcast_to(image, (*size, 3)).copy(), rad * radius_m


def sign(rng: np.random.Generator, width_m: float, height_m: float):
    """A traffic sign: a colour plate with a white border and a symbol-like photo crop."""
    texel = OBJECT_TEXEL_M
    size = (_px(height_m, texel), _px(width_m, texel))
    colour = SIGNS[rng.integers(len(SIGNS))]
    image = _tint(_detail(rng, "text", size, 0.3), colour, 0.35)
    border = max(1, size[0] // 8)
    image[:border], image[-border:], image[:, :border], image[:, -border:] = (0.95,) * 4
    return image, texel


def car_body(rng: np.random.Generator, length_m: float, height_m: float):
    """Paint over photo texture (coffee or coins, as the flat world's cars), a dark band
    of tyres and bumpers along the bottom 0.3 m, lighter towards the top."""
    texel = OBJECT_TEXEL_M
    size = (_px(height_m, texel), _px(length_m, texel))
    colour = np.asarray(BODY_COLOURS[rng.integers(len(BODY_COLOURS))]) * rng.uniform(0.85, 1.1)
    photo = ("coffee", "coins")[rng.integers(2)]
    tex = crop(rng, photo, size[1] / size[0], size, min_frac=0.25)
    keep = np.float32(rng.uniform(0.2, 0.45))
    image = (1 - keep) * _tint(
        luminance(tex) / max(float(luminance(tex).mean()), 1e-3), colour, 0.45
    )
    image += keep * tex
    below_top = (np.arange(size[0]) + 0.5) * texel
    image *= (1.1 - 0.25 * below_top / height_m)[:, None, None]
    image[below_top > height_m - 0.3] = _tint(
        _detail(rng, "gravel", size, 0.5), (0.07, 0.07, 0.07), 0.5
    )[below_top > height_m - 0.3]
    return image[::-1], texel  # row 0 at the ground, as boxes map it


def glass(rng: np.random.Generator, length_m: float, height_m: float):
    """Car windows: dark, bluish, with faint reflections (a sky or building photo crop)."""
    texel = OBJECT_TEXEL_M
    size = (_px(height_m, texel), _px(length_m, texel))
    photo = ("camera", "rocket", "motorcycle")[rng.integers(3)]
    return _tint(_detail(rng, photo, size, 0.4), (0.12, 0.14, 0.18), 0.5), texel


def clothes(rng: np.random.Generator, dark: bool):
    """Clothing: a photo crop (astronaut or chelsea, as the flat world's pedestrians) tinted
    by a clothes colour; ``dark`` for trousers."""
    colour = (0.15, 0.17, 0.25) if dark else CLOTHES[rng.integers(len(CLOTHES))]
    photo = ("astronaut", "chelsea")[rng.integers(2)]
    return plain(rng, photo, np.asarray(colour) * rng.uniform(0.8, 1.15), 0.5, OBJECT_TEXEL_M)


def skin(rng: np.random.Generator):
    colour = SKIN[rng.integers(len(SKIN))]
    return plain(rng, "chelsea", colour, 0.25, OBJECT_TEXEL_M)
