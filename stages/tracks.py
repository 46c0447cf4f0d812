"""Object ids that stay the same over a whole video.

Within a clip the model tracks objects itself: slot attention carries each slot from frame
to frame, so slot k is one object for the clip's T frames. Clips restart from the initial
slots (a state carried over hundreds of frames is a regime the model never trained in), so
slot k of the next clip may be another object. Consecutive clips share ``overlap`` frames
(``stages.predict.clip_windows``): there, both clips segmented the same pixels, and each
slot of the new clip takes the object id of the slot of the previous clip it overlaps most
(Hungarian matching on IoU, kept above ``min_iou``); a slot matched to none is a new
object. With no shared frame (clips of one frame) the previous clip's last frame and the
new clip's first frame are matched instead: objects move a little between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from stages.settings import Setting, Settings, floats

MIN_IOU = Setting(
    0.3,
    floats(0, 1, low_open=True),
    "Smallest IoU on the frames two clips share for a slot to keep its object id.",
)


def slot_iou(previous: np.ndarray, new: np.ndarray, slots: int) -> np.ndarray:
    """(K, K) IoU of every previous slot's segment with every new slot's segment over the
    same pixels (two stacks of argmax slot ids of one shape)."""
    pairs = np.bincount(previous.ravel() * slots + new.ravel(), minlength=slots * slots)
    inter = pairs.reshape(slots, slots).astype(np.float64)
    union = inter.sum(1, keepdims=True) + inter.sum(0, keepdims=True) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass(frozen=True)
class TrackParams(Settings):
    min_iou: float = MIN_IOU.field()


@dataclass
class SlotTracks:
    """The object id of each slot of the latest clip; 0 is the background."""

    slots: int  # K; the last slot is the background
    params: TrackParams = field(default_factory=TrackParams)
    ids: np.ndarray | None = None  # (K,) object id per slot of the latest clip
    next_id: int = 1

    def link(
        self, clip: np.ndarray, previous: np.ndarray | None, anchor: np.ndarray | None
    ) -> np.ndarray:
        """Object ids (K,) of a new clip's slots, given its argmax slot ids ``clip`` (T, h, w),
        and, from the second clip on, the previous clip's slot ids ``previous`` and the new
        clip's ``anchor`` on the frames to match (same shape)."""
        background = self.slots - 1
        present = np.bincount(clip.ravel(), minlength=self.slots) > 0
        ids = np.zeros(self.slots, np.int64)
        if self.ids is not None and previous is not None and anchor is not None:
            iou = slot_iou(previous, anchor, self.slots)
            iou[background, :] = 0
            iou[:, background] = 0
            rows, cols = linear_sum_assignment(iou, maximize=True)
            keep = iou[rows, cols] >= self.params.min_iou
            ids[cols[keep]] = self.ids[rows[keep]]
        for slot in np.flatnonzero(present & (ids == 0)):
            if slot != background:
                ids[slot] = self.next_id
                self.next_id += 1
        ids[background] = 0
        self.ids = ids
        return ids
