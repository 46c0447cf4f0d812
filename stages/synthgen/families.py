"""Object families: a silhouette, a size range, texture photographs and a paint job each.

A family is what a detector should learn to recognise whatever the object's motion, so
moving and static objects are drawn from the same families (like driving and parked cars).
Silhouettes are functions of local metric coordinates on the object's vertical plane:
``s`` horizontal from the centre, ``e`` height above the ground, for an object ``w`` wide
and ``h`` tall; they are evaluated exactly per pixel (no texture lookup), so GT masks are
crisp and identical to what is drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stages.synthgen.textures import crop, luminance

Mask = Callable[[np.ndarray, np.ndarray, float, float], np.ndarray]


def rounded_box(s, e, s0, s1, e0, e1, r) -> np.ndarray:
    """Inside the box [s0, s1] x [e0, e1] with corners rounded by radius r."""
    cs = np.clip(s, s0 + r, s1 - r)
    ce = np.clip(e, e0 + r, e1 - r)
    return (s - cs) ** 2 + (e - ce) ** 2 <= r * r


def ellipse(s, e, cs, ce, rs, re) -> np.ndarray:
    return ((s - cs) / rs) ** 2 + ((e - ce) / re) ** 2 <= 1.0


def car(s, e, w, h):
    body = rounded_box(s, e, -w / 2, w / 2, 0.15 * h, 0.62 * h, 0.12 * h)
    cabin = rounded_box(s, e, -0.42 * w, 0.42 * w, 0.5 * h, h, 0.15 * h)
    wheels = (np.abs(s) >= 0.26 * w) & (np.abs(s) <= 0.46 * w) & (e >= 0) & (e <= 0.2 * h)
    return body | cabin | wheels


def car_windows(s, e, w, h):
    return rounded_box(s, e, -0.35 * w, 0.35 * w, 0.66 * h, 0.92 * h, 0.07 * h)


def pedestrian(s, e, w, h):
    head = ellipse(s, e, 0.0, 0.935 * h, 0.2 * w, 0.065 * h)
    torso = ellipse(s, e, 0.0, 0.64 * h, 0.5 * w, 0.23 * h)
    legs = (np.abs(np.abs(s) - 0.2 * w) <= 0.14 * w) & (e >= 0) & (e <= 0.5 * h)
    return head | torso | legs


def truck(s, e, w, h):
    box = rounded_box(s, e, -w / 2, w / 2, 0.12 * h, h, 0.05 * h)
    wheels = (np.abs(s) >= 0.22 * w) & (np.abs(s) <= 0.46 * w) & (e >= 0) & (e <= 0.14 * h)
    return box | wheels


def cyclist(s, e, w, h):
    r = 0.19 * w
    wheels = ellipse(s, e, -0.3 * w, r, r, r) | ellipse(s, e, 0.3 * w, r, r, r)
    frame = rounded_box(s, e, -0.3 * w, 0.3 * w, 0.16 * h, 0.3 * h, 0.03 * h)
    legs = rounded_box(s, e, -0.1 * w, 0.1 * w, 0.2 * h, 0.5 * h, 0.04 * h)
    torso = ellipse(s, e, 0.04 * w, 0.64 * h, 0.14 * w, 0.2 * h)
    head = ellipse(s, e, 0.09 * w, 0.91 * h, 0.07 * w, 0.075 * h)
    return wheels | frame | legs | torso | head


@dataclass(frozen=True)
class Family:
    name: str
    width_m: tuple[float, float]
    height_m: tuple[float, float]
    photos: tuple[str, ...]
    palette: tuple[tuple[float, float, float], ...]
    silhouette: Mask
    #: (mask, colour) details painted over the body: windows, tyres, clothes
    details: tuple[tuple[Mask, tuple[float, float, float]], ...] = ()

    def fill(self, w: float, h: float, n: int = 48) -> float:
        """Fraction of the w x h rectangle the silhouette covers."""
        s, e = np.meshgrid((np.arange(n) + 0.5) / n * w - w / 2, (np.arange(n) + 0.5) / n * h)
        return float(self.silhouette(s, e, w, h).mean())

    def paint(self, rng: np.random.Generator, w: float, h: float, px_per_m: float) -> tuple:
        """The object's appearance on its plane: (RGB canvas, photo name).

        A crop of a real photograph gives texture; a family colour tints it (keeping some
        of the photo's own colour); details get their own colour over the same texture;
        mild shading (lighter top, darker rounded sides) gives volume.
        """
        th, tw = max(8, int(round(h * px_per_m))), max(8, int(round(w * px_per_m)))
        name = self.photos[rng.integers(len(self.photos))]
        tex = crop(rng, name, tw / th, (th, tw), min_frac=0.25)
        detail = luminance(tex) / max(float(luminance(tex).mean()), 1e-3)
        tint = np.asarray(self.palette[rng.integers(len(self.palette))], np.float32)
        tint = tint * np.float32(rng.uniform(0.85, 1.15))
        canvas = tint * (0.55 + 0.45 * detail)[..., None]
        keep = np.float32(rng.uniform(0.2, 0.45))
        canvas = (1 - keep) * canvas + keep * tex
        s, e = np.meshgrid(
            (np.arange(tw) + 0.5) / tw * w - w / 2, h - (np.arange(th) + 0.5) / th * h
        )
        for mask, colour in self.details:
            inside = mask(s, e, w, h)
            canvas[inside] = np.asarray(colour, np.float32) * (0.6 + 0.4 * detail[inside, None])
        shade = (0.8 + 0.3 * e / h) * (1.0 - 0.25 * (2 * s / w) ** 2)
        return np.clip(canvas * shade[..., None].astype(np.float32), 0.0, 1.0), name


def _tyres(lo: float, hi: float, top: float) -> Mask:
    return lambda s, e, w, h: (np.abs(s) >= lo * w) & (np.abs(s) <= hi * w) & (e <= top * h)


BODY_COLOURS = (
    (0.75, 0.12, 0.1),
    (0.15, 0.25, 0.65),
    (0.85, 0.85, 0.82),
    (0.6, 0.62, 0.65),
    (0.12, 0.12, 0.13),
    (0.15, 0.4, 0.2),
    (0.9, 0.75, 0.15),
)
CLOTHES = ((0.2, 0.3, 0.6), (0.7, 0.2, 0.2), (0.9, 0.9, 0.85), (0.2, 0.2, 0.2), (0.8, 0.5, 0.1))

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "car",
            (1.6, 2.0),
            (1.35, 1.7),
            ("coffee", "coins"),
            BODY_COLOURS,
            car,
            ((car_windows, (0.12, 0.15, 0.2)), (_tyres(0.26, 0.46, 0.2), (0.06, 0.06, 0.06))),
        ),
        Family(
            "pedestrian",
            (0.5, 0.75),
            (1.55, 1.9),
            ("astronaut", "chelsea"),
            CLOTHES,
            pedestrian,
            (
                (lambda s, e, w, h: e >= 0.87 * h, (0.8, 0.6, 0.45)),
                (lambda s, e, w, h: e <= 0.5 * h, (0.15, 0.17, 0.25)),
            ),
        ),
        Family(
            "truck",
            (2.3, 2.6),
            (2.6, 3.6),
            ("page", "text"),
            BODY_COLOURS,
            truck,
            (
                (lambda s, e, w, h: (e >= 0.12 * h) & (e <= 0.18 * h), (0.1, 0.1, 0.1)),
                (lambda s, e, w, h: np.abs(s) <= 0.012 * w, (0.2, 0.2, 0.2)),
                (_tyres(0.22, 0.46, 0.12), (0.06, 0.06, 0.06)),
            ),
        ),
        Family(
            "cyclist",
            (1.5, 1.8),
            (1.6, 1.85),
            ("immunohistochemistry", "hubble_deep_field"),
            CLOTHES,
            cyclist,
            (
                (lambda s, e, w, h: e <= 0.38 * w, (0.08, 0.08, 0.08)),
                (lambda s, e, w, h: e >= 0.84 * h, (0.8, 0.6, 0.45)),
            ),
        ),
    )
}
