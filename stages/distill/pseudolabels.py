"""Teacher pseudo-labels (paper section 3.3.2, eq. 2): object candidates cut out of the
teacher's argmax segmentation, each scored by the teacher's own confidence.

Per frame: argmax over the K attention maps; the background slot (the LAST one) is never a
candidate; each 4-connected region of each other slot is one candidate ("one-to-many"), or
a slot's whole binary map is one ("one-to-one" ablation). A candidate is kept when its
confidence (mean of the teacher's W_fg over its pixels) is above ``threshold`` and its area
is above ``min_area_fraction`` of the map's pixels.

Everything but the connected-component labelling is batched tensor work on the maps'
device. The labelling runs on the CPU as ONE scikit-image call over all frames of the batch
stacked into a single label image (frames separated by a background row), which labels
every slot at once; one OpenCV or scipy call per (frame, slot) binary map was several times
slower (figures in docs/distillation.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from skimage.measure import label as label_regions

from stages.settings import Setting, Settings, choice, floats

CONNECTIONS = ("one-to-many", "one-to-one")
SCORE_MAPS = ("fg", "slot")

#: The reference's floor on a candidate, as a share of the map: more than 10 pixels of its
#: 120x242 TRI-PD maps. A pixel count holds for one map size only: 10 px are 0.03 % of a
#: KITTI or TRI-PD map but 0.5 % of synth-cpu's 24x80 one, more than the 0.33 % under which
#: an object counts as small (stages.metrics.SIZE_EDGES), so that every small object was
#: barred from the teacher's labels there (docs/distillation.md).
REFERENCE_MIN_AREA_FRACTION = 10 / (120 * 242)


@dataclass(frozen=True)
class PseudoLabelConfig(Settings):
    """How teacher candidates are cut and filtered (eq. 2)."""

    threshold: float = Setting(
        0.9,
        floats(0, 1, high_open=True),
        "Confidence p a teacher candidate or a motion mask must exceed (eqs. 2 and 4).",
    ).field()
    min_area_fraction: float = Setting(
        REFERENCE_MIN_AREA_FRACTION,
        floats(0, 1, high_open=True),
        "A teacher candidate needs more than this share of the map's pixels (the "
        "reference's 10 px of its 120x242 maps: 9.9 px of a 92x312 KITTI map, 0.66 px of "
        "synth-cpu's 24x80).",
    ).field()
    connection: str = Setting(
        "one-to-many",
        choice(*CONNECTIONS),
        "Each connected region of a teacher slot is a candidate (one-to-many), or the whole "
        "slot (one-to-one, the table-4 ablation).",
    ).field()
    score_map: str = Setting(
        "fg",
        choice(*SCORE_MAPS),
        "Map a candidate is scored on: fg = the teacher's W_fg = 1 - W_bg, as the reference "
        "and as the paper scores motion masks (3.3.3); slot = the candidate's own slot map, "
        "the literal reading of eq. 2's source map.",
    ).field()


@dataclass
class Candidates:
    """Kept candidates of each frame, padded to the largest count C (at least 1) of the batch.

    Within a frame, candidates are sorted by decreasing confidence. ``masks`` (F, C, h, w)
    bool, ``valid`` (F, C) bool, ``scores`` (F, C) float32 (0 where not valid): the shape of
    the losses' (targets, valid), with ``pos_weight = 1 + scores`` (eq. 3).
    """

    masks: torch.Tensor
    valid: torch.Tensor
    scores: torch.Tensor


def teacher_candidates(maps: torch.Tensor, config: PseudoLabelConfig) -> Candidates:
    """Pseudo-labels from teacher attention maps ``maps`` (F, K, h, w), last slot background."""
    if maps.dim() != 4 or maps.shape[1] < 2:
        raise ValueError(f"expected teacher maps (F, K>=2, h, w), got {tuple(maps.shape)}")
    frames, slots = maps.shape[:2]
    background = slots - 1
    # max() rather than argmax(): same first-maximum indices, faster on the CPU over the
    # strided slot dimension (docs/distillation.md), and the values are the "slot" score map.
    top, slot = maps.max(dim=1)
    confidence = 1.0 - maps[:, background].float() if config.score_map == "fg" else top.float()
    if config.connection == "one-to-many":
        regions, count = _connected_regions(slot, background)
    else:
        frame = torch.arange(frames, device=maps.device).view(-1, 1, 1)
        regions = torch.where(slot == background, 0, frame * background + slot + 1)
        count = frames * background + 1
    return _select(regions, count, confidence, config)


def _connected_regions(slot: torch.Tensor, background: int) -> tuple[torch.Tensor, int]:
    """Ids of the 4-connected same-slot regions, unique over the batch; 0 on background.

    Returns the (F, h, w) long ids on ``slot``'s device and the number of ids (background
    included).
    """
    frames, height, width = slot.shape
    small = torch.uint8 if background < 256 else torch.int32
    labels = slot.to(small).cpu().numpy()
    stacked = np.full((frames, height + 1, width), background, dtype=labels.dtype)
    stacked[:, :height] = labels
    ids, count = label_regions(
        stacked.reshape(frames * (height + 1), width),
        background=background,
        connectivity=1,
        return_num=True,
    )
    ids = ids.reshape(frames, height + 1, width)[:, :height]
    return torch.from_numpy(np.ascontiguousarray(ids)).to(slot.device, torch.long), count + 1


def _select(
    regions: torch.Tensor, count: int, confidence: torch.Tensor, config: PseudoLabelConfig
) -> Candidates:
    """Score every region (eq. 2), keep the confident large ones, pack them per frame.

    Only the pixels of some region are visited (the background slot usually covers most
    of a frame).
    """
    frames, height, width = regions.shape
    frame_pixels = height * width
    device = regions.device
    flat = regions.reshape(-1)
    pixels = flat.nonzero().squeeze(1)
    region = flat[pixels]
    frame_of_pixel = torch.div(pixels, frame_pixels, rounding_mode="floor")
    area = torch.bincount(region, minlength=count)
    # float64 sums: a candidate's mean must not drift across the threshold with its size.
    inside = torch.zeros(count, dtype=torch.float64, device=device)
    inside.index_add_(0, region, confidence.reshape(-1)[pixels].double())
    score = inside / area.clamp(min=1)
    frame = torch.zeros(count, dtype=torch.long, device=device).scatter_(0, region, frame_of_pixel)

    keep = (area > config.min_area_fraction * frame_pixels) & (score > config.threshold)
    keep[0] = False
    kept = keep.nonzero().squeeze(1)
    kept = kept[torch.argsort(score[kept], descending=True, stable=True)]
    kept = kept[torch.argsort(frame[kept], stable=True)]
    kept_frame = frame[kept]
    per_frame = torch.bincount(kept_frame, minlength=frames)
    first = per_frame.cumsum(0) - per_frame
    column = torch.arange(kept.numel(), device=device) - first[kept_frame]
    columns = max(int(per_frame.max()) if kept.numel() else 0, 1)

    column_of_region = torch.full((count,), -1, dtype=torch.long, device=device)
    column_of_region[kept] = column
    pixel_column = column_of_region[region]
    on = (pixel_column >= 0).nonzero().squeeze(1)
    plane = frame_of_pixel[on] * columns + pixel_column[on]
    masks = torch.zeros(frames * columns * frame_pixels, dtype=torch.bool, device=device)
    masks[plane * frame_pixels + pixels[on] % frame_pixels] = True
    valid = torch.arange(columns, device=device).unsqueeze(0) < per_frame.unsqueeze(1)
    scores = torch.zeros(frames, columns, dtype=torch.float32, device=device)
    scores[kept_frame, column] = score[kept].float()
    return Candidates(masks=masks.view(frames, columns, height, width), valid=valid, scores=scores)
