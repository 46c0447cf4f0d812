"""The masks stage's tunable parameters, declared once (stages.settings) and free of heavy
imports so the CLI can show them without loading OpenCV or Zarr. Pixel values are at the
flow's stored resolution.

The defaults favour precision (only masks matched to a slot supervise, so a wrong mask costs
more than a missed one). The thresholds that decide are not pixel constants: the floor is a
multiple of each frame's own flow noise (its forward-backward round-trip error), and flow is
trusted only on texture relative to the frame's median, so both carry across resolutions,
frame rates and flow methods. ``noise_k`` and ``texture_frac`` were tuned on synth seed 1
(flat and street worlds) and still-camera street videos of seed 5, at 96x320 and 384x512;
the instance settings at 96x320 on the flat world. Figures: docs/masks.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from stages.settings import Setting, Settings, choice, floats, ints

CAMERA_MODELS = ("homography", "fundamental", "parallax")
ROBUST_FITS = ("ransac", "lmeds")
#: ``--segmenter`` default: the packaged model (``make segmenter``). It is the default because
#: it is ahead of the geometric rule on every world and camera measured (docs/masks.md,
#: "Learned segmenter": street driving precision 0.64 against 0.12, still cameras and the flat
#: world on recall and precision), and so is DIOD trained on its masks (docs/results.md); it
#: costs 1.7-4x the geometric rule's masks time (26-27 s against 16 s in `make demo`, 56 s
#: against 14 s for 288 frames at 480x640).
BUILTIN_SEGMENTER = "builtin"
#: ``--segmenter none``: the geometric rule decides (``MotionParams``' thresholds)
NO_SEGMENTER = "none"


#: Defaults of the instance settings left unset (None), per decider. The geometric rule's
#: (tuned with it on the flat world) keep its precision: its moving pixels are noisy, and a
#: 2-means split at the separation a smooth flow gradient gives (about 2.5 spreads) and a
#: strict persistence test remove fragments. A segmenter's moving pixels are clean, and
#: there the same two tests cut and dropped true movers: a car under forward driving, whose
#: flow spans a wide gradient, split into two masks that each miss IoU 0.5, and movers whose
#: warped neighbour mask lands partly off them (large flow, flow error at their edges)
#: failed 0.8. Splitting only past 3.5 spreads (a margin over the smooth gradient's 2.5) and
#: keeping what half-persists gained precision and recall@50 on every camera kind of the
#: choosing sets, and lost both on the geometric rule's (docs/masks.md, "Splitting and
#: persistence after a segmenter").
GEOMETRIC_INSTANCE_DEFAULTS = {"split_ratio": 2.5, "persist_frac": 0.8}
SEGMENTER_INSTANCE_DEFAULTS = {"split_ratio": 3.5, "persist_frac": 0.5}


@dataclass(frozen=True)
class MotionParams(Settings):
    """Camera-motion fit and the moving-pixel thresholds (stages.masks.motion)."""

    camera_model: str = Setting(
        "homography",
        choice(*CAMERA_MODELS),
        "Camera-motion model: transfer residual (homography), Sampson distance (fundamental), "
        "or distance from the static parallax of a plane + epipole (parallax: a camera "
        "driving forward through a 3-D scene).",
    ).field()
    robust: str = Setting("ransac", choice(*ROBUST_FITS), "Robust fit.").field()
    ransac_threshold: float = Setting(
        1.0, floats(0, low_open=True), "Inlier distance of the robust fit, px."
    ).field()
    max_points: int = Setting(
        1000, ints(8), "Flow samples the camera model is fitted on.", cli=False
    ).field()
    min_residual: float = Setting(
        0.25, floats(0), "A pixel moves if its residual exceeds this many px ..."
    ).field()
    rel_residual: float = Setting(
        0.1, floats(0), "... and this fraction of its flow magnitude ..."
    ).field()
    noise_k: float = Setting(
        22.0,
        floats(0),
        "... and this many times the flow's median forward-backward round-trip error "
        "(its own noise; needs backward flow) ...",
    ).field()
    adaptive_k: float = Setting(
        3.0, floats(0), "... and the frame's median residual + k robust sigmas."
    ).field()
    background_window: float = Setting(
        0.5,
        floats(0),
        "Remove the residual's slowly varying part over windows this fraction of the width "
        "(0: off).",
    ).field()
    texture_frac: float = Setting(
        0.3,
        floats(0),
        "Trust flow only where the image has texture: the structure tensor's smaller "
        "eigenvalue (5x5 window) above this fraction of the frame's median (0: off).",
    ).field()
    fb_alpha: float = Setting(
        0.01,
        floats(0),
        "Forward-backward check: a pixel's flow is trusted where the squared round-trip "
        "error is below fb_alpha * (|forward|^2 + |backward|^2) + fb_beta.",
        cli=False,
    ).field()
    fb_beta: float = Setting(0.5, floats(0), "See fb_alpha: the constant part.", cli=False).field()
    seed: int = Setting(0, ints(), "Seed of the robust fits.").field()


@dataclass(frozen=True)
class InstanceParams(Settings):
    """Component cleaning, splitting and keeping (stages.masks.instances); ``min_area``
    and ``max_masks`` also apply to imported masks."""

    open_radius: int = Setting(1, ints(0), "Opening radius, px.").field()
    close_radius: int = Setting(0, ints(0), "Closing radius, px.").field()
    min_area: int = Setting(50, ints(1), "Smallest mask kept, px (imported masks too).").field()
    split_ratio: float | None = Setting(
        None,
        floats(0, optional=True),
        "Split a mask whose flow forms 2 clusters this many pooled spreads apart (default: "
        f"{GEOMETRIC_INSTANCE_DEFAULTS['split_ratio']} for the geometric rule, "
        f"{SEGMENTER_INSTANCE_DEFAULTS['split_ratio']} after a segmenter) ...",
    ).field()
    split_min_distance: float = Setting(
        1.0, floats(0), "... and at least this many px apart."
    ).field()
    contact_min_diff: float = Setting(
        0.6,
        floats(0),
        "Drop a mask whose bottom moves within this many px of the ground just below it: a "
        "static object that its parallax, not its own motion, made stand out (0: off; the "
        f"geometric rule's, with --segmenter {NO_SEGMENTER} only).",
    ).field()
    contact_gap: int = Setting(
        2, ints(0), "Rows between a mask's bottom and the ground band.", cli=False
    ).field()
    contact_band: int = Setting(
        4, ints(1), "Rows of ground compared with a mask's bottom.", cli=False
    ).field()
    persist_frac: float | None = Setting(
        None,
        floats(0, 1, optional=True),
        "Keep a mask if this fraction of it moves in a flow-warped neighbouring frame "
        f"(0: keep all; default: {GEOMETRIC_INSTANCE_DEFAULTS['persist_frac']} for the "
        f"geometric rule, {SEGMENTER_INSTANCE_DEFAULTS['persist_frac']} after a segmenter).",
    ).field()
    max_masks: int = Setting(
        32, ints(1, 65535), "Most masks per frame; the largest are kept (imported masks too)."
    ).field()


#: The instance settings that are part of the geometric rule's decision of what moves, and
#: their value under a segmenter. The ground-contact test drops what moves like the ground
#: below it: the geometric rule's false movers (parked cars lifted by parallax), which a
#: segmenter has learnt as negatives. After a segmenter it dropped true movers instead (cars
#: ahead, crossing cars); without it recall@50 gains 3-15 points on street and still-camera
#: sets for 0-5 points of precision (10 on one), the flat world 3-5 of precision (docs/masks.md,
#: "No ground-contact test after a segmenter").
GEOMETRIC_ONLY_INSTANCE = {"contact_min_diff": 0.0}


def _unset_filled(instances: InstanceParams, defaults: dict[str, float]) -> InstanceParams:
    """``instances`` with the settings in ``defaults`` that are None set to their default."""
    return replace(
        instances,
        **{name: value for name, value in defaults.items() if getattr(instances, name) is None},
    )


def geometric_instances(instances: InstanceParams) -> InstanceParams:
    """The instance settings the geometric rule's masks are made with."""
    return _unset_filled(instances, GEOMETRIC_INSTANCE_DEFAULTS)


def segmenter_instances(instances: InstanceParams) -> InstanceParams:
    """The instance settings a segmenter's masks are made with."""
    return replace(_unset_filled(instances, SEGMENTER_INSTANCE_DEFAULTS), **GEOMETRIC_ONLY_INSTANCE)
