"""How good motion masks are as supervision, wherever ground truth exists.

Per frame, every mask is compared with every GT instance; a mask is a true positive when
its IoU with a GT instance exceeds 0.5. Masks of a frame are disjoint and so are GT
instances, so an IoU above 0.5 pairs a mask with at most one instance and no assignment
step is needed. Counts are summed over frames (micro average):
precision = TP / #masks, recall = TP / #GT, F1 = 2PR / (P + R).
Scored twice: against GT instances that MOVE (what motion masks can find; synth knows
which) and against ALL GT instances (how much the supervision misses, e.g. static cars).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np

IOU_THRESHOLD = 0.5
COMPACT_LIMIT = 1 << 20


@dataclass
class MaskCounts:
    """Summed over frames. ``gt_moving``/``tp_moving`` are None where moving ids are unknown."""

    frames: int = 0
    masks: int = 0
    gt_all: int = 0
    tp_all: int = 0
    gt_moving: int | None = 0
    tp_moving: int | None = 0

    def __add__(self, other: MaskCounts) -> MaskCounts:
        def add(a, b):
            return None if a is None or b is None else a + b

        return MaskCounts(
            self.frames + other.frames,
            self.masks + other.masks,
            self.gt_all + other.gt_all,
            self.tp_all + other.tp_all,
            add(self.gt_moving, other.gt_moving),
            add(self.tp_moving, other.tp_moving),
        )

    def to_dict(self) -> dict[str, int | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, int | None]) -> MaskCounts:
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def scores(self) -> dict[str, dict[str, float | int] | None]:
        """Precision/recall/F1 vs moving GT (None if unknown) and vs all GT."""
        out: dict[str, dict[str, float | int] | None] = {
            "all": prf(self.tp_all, self.masks, self.gt_all)
        }
        out["moving"] = (
            None if self.gt_moving is None else prf(self.tp_moving, self.masks, self.gt_moving)
        )
        return out


def prf(tp: int, predicted: int, gt: int) -> dict[str, float | int]:
    precision = tp / predicted if predicted else 0.0
    recall = tp / gt if gt else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "masks": predicted,
        "gt": gt,
    }


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an integer label map (ids are never blended)."""
    if labels.shape == (height, width):
        return labels
    xs = np.minimum((np.arange(width) + 0.5) * labels.shape[1] / width, labels.shape[1] - 1)
    ys = np.minimum((np.arange(height) + 0.5) * labels.shape[0] / height, labels.shape[0] - 1)
    return labels[ys.astype(np.int64)[:, None], xs.astype(np.int64)[None, :]]


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct ids, each pixel's index into them): np.unique(return_inverse) without its
    sort when ids are small, which they are for every dataset but colour-coded ones."""
    top = int(labels.max(initial=0))
    if labels.min(initial=0) < 0 or top >= COMPACT_LIMIT:
        values, index = np.unique(labels, return_inverse=True)
        return values, index.reshape(labels.shape)
    values = np.flatnonzero(np.bincount(labels.ravel(), minlength=1))
    lookup = np.zeros(top + 1, np.int64)
    lookup[values] = np.arange(values.size)
    return values, lookup[labels]


def frame_counts(masks: np.ndarray, gt: np.ndarray, moving_ids: Iterable[int] | None) -> MaskCounts:
    """Counts for one frame: ``masks`` (H, W) ids 0..M, ``gt`` (H, W) GT ids at any size."""
    gt_values, gt_index = _compact(resize_labels(gt, *masks.shape))
    n_masks = int(masks.max()) + 1
    n_gt = gt_values.size
    joint = masks.astype(np.int64) * n_gt + gt_index
    inter = np.bincount(joint.ravel(), minlength=n_masks * n_gt).reshape(n_masks, n_gt)
    mask_area = inter.sum(axis=1)
    gt_area = inter.sum(axis=0)
    union = mask_area[:, None] + gt_area[None, :] - inter
    iou = inter / np.maximum(union, 1)
    objects = gt_values != 0
    present_masks = int((mask_area[1:] > 0).sum())
    matched = (iou[1:] > IOU_THRESHOLD).any(axis=0) & objects
    counts = MaskCounts(
        frames=1,
        masks=present_masks,
        gt_all=int(objects.sum()),
        tp_all=int(matched.sum()),
        gt_moving=None,
        tp_moving=None,
    )
    if moving_ids is not None:
        moving = np.isin(gt_values, np.fromiter(moving_ids, np.int64)) & objects
        counts.gt_moving = int(moving.sum())
        counts.tp_moving = int((matched & moving).sum())
    return counts


def format_scores(scores: Mapping[str, Mapping[str, object] | None]) -> list[str]:
    """Lines for a terminal: one per reference set."""
    lines = []
    for name in ("moving", "all"):
        s = scores.get(name)
        if s is None:
            lines.append(
                f"  vs {name:6s} GT: unknown (the dataset does not say which objects move)"
            )
            continue
        lines.append(
            f"  vs {name:6s} GT: precision {s['precision']:.3f}  recall {s['recall']:.3f}  "
            f"F1 {s['f1']:.3f}  (TP {s['tp']}, masks {s['masks']}, GT {s['gt']})"
        )
    return lines
