"""Object ids that stay the same over a whole video.

The model numbers objects by slot, and a slot is meant to follow one object through a clip;
but clips restart from the initial slots (a state carried over hundreds of frames is a
regime the model never trained in), so the next clip may number its slots differently, and
a model can also move an object to another slot between two frames of one clip (seen on
the street world: the first frame of every clip in one slot, the rest in another).

So ids are given frame by frame. Within a clip a slot keeps its object's id: the slot is
the model's own tracking, and it tells apart two small objects that cross, which positions
cannot. A slot without an id in the clip (an object moved to another slot, or just
appeared) takes the id of an object of the previous frame that no slot took: the one it
overlaps most (Hungarian matching on IoU, kept from ``min_iou`` up), else the nearest
(centroids within ``max_jump`` of the frame diagonal: a small fast object overlaps little
with itself one frame later); else it is a new object. A new clip first links its slots on
the frame it shares with the previous clip (``stages.predict.clip_windows(overlap=1)``),
where both clips segmented the same pixels, the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from stages.settings import Setting, Settings, floats

MIN_IOU = Setting(
    0.3,
    floats(0, 1, low_open=True),
    "Smallest IoU with an object of the previous (or the shared) frame for a segment to "
    "keep that object's id.",
)


MAX_JUMP = Setting(
    0.1,
    floats(0, 1),
    "Farthest an object's centroid may move between two frames to keep its id when it no "
    "longer overlaps itself, as a fraction of the frame diagonal.",
)


@dataclass(frozen=True)
class TrackParams(Settings):
    min_iou: float = MIN_IOU.field()
    max_jump: float = MAX_JUMP.field()


def centroids(labels: np.ndarray, count: int) -> np.ndarray:
    """(count, 2) mean (y, x) of each label 0..count-1 (nan where absent)."""
    ys, xs = np.indices(labels.shape)
    area = np.bincount(labels.ravel(), minlength=count).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack(
            [
                np.bincount(labels.ravel(), ys.ravel(), count) / area,
                np.bincount(labels.ravel(), xs.ravel(), count) / area,
            ],
            axis=1,
        )


def overlaps(
    objects: np.ndarray, slots: np.ndarray, num_slots: int
) -> tuple[np.ndarray, np.ndarray]:
    """(object ids, IoU (objects, K)) between the objects (ids > 0) of one map and the slot
    segments of another of the same shape."""
    ids, index = np.unique(objects, return_inverse=True)
    pairs = np.bincount(index.ravel() * num_slots + slots.ravel(), minlength=len(ids) * num_slots)
    inter = pairs.reshape(len(ids), num_slots).astype(np.float64)
    union = inter.sum(1, keepdims=True) + inter.sum(0, keepdims=True) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return ids[ids > 0], iou[ids > 0]


@dataclass
class ObjectTracks:
    """Gives the slot segments of each frame object ids; 0 is the background."""

    slots: int  # K; the last slot is the background
    params: TrackParams = field(default_factory=TrackParams)
    previous: np.ndarray | None = None  # object ids of the last frame given ids (map size)
    clip: dict[int, int] = field(default_factory=dict)  # slot -> id in the current clip
    next_id: int = 1

    def _match(self, slot_map: np.ndarray, open_slots: set[int], taken: set[int]) -> dict[int, int]:
        """slot -> id for the ``open_slots`` present in ``slot_map``, from the previous
        frame's objects not ``taken``: the one a segment overlaps most (IoU >= min_iou),
        then for the rest the nearest (centroids within max_jump of the diagonal)."""
        if self.previous is None:
            return {}
        ids, iou = overlaps(self.previous, slot_map, self.slots)
        present = np.bincount(slot_map.ravel(), minlength=self.slots) > 0
        cols = [s for s in np.flatnonzero(present) if int(s) in open_slots]
        rows = [r for r, i in enumerate(ids) if int(i) not in taken]
        if not cols or not rows:
            return {}
        iou = iou[np.ix_(rows, cols)]
        r_idx, c_idx = linear_sum_assignment(iou, maximize=True)
        keep = iou[r_idx, c_idx] >= self.params.min_iou
        matched = {
            int(cols[c]): int(ids[rows[r]]) for r, c in zip(r_idx[keep], c_idx[keep], strict=True)
        }
        free = [s for s in cols if int(s) not in matched]
        gone = [int(ids[r]) for r in rows if int(ids[r]) not in matched.values()]
        if not free or not gone:
            return matched
        before = centroids(self.previous, int(self.previous.max()) + 1)[gone]
        after = centroids(slot_map, self.slots)[free]
        distance = np.linalg.norm(before[:, None] - after[None], axis=2)
        r_idx, c_idx = linear_sum_assignment(distance)
        reach = self.params.max_jump * float(np.hypot(*slot_map.shape))
        for r, c in zip(r_idx, c_idx, strict=True):
            if distance[r, c] <= reach:
                matched[int(free[c])] = gone[r]
        return matched

    def start_clip(self, shared: np.ndarray | None) -> None:
        """A new clip; ``shared``: its slot map of the last frame already given ids (None
        when clips share no frame), where its slots are linked to those frames' objects."""
        if shared is None:
            self.clip = {}
            return
        self.clip = self._match(shared, set(range(self.slots - 1)), set())

    def frame(self, slot_map: np.ndarray) -> np.ndarray:
        """The object id of each slot (K,) in a new frame's argmax slot map (h, w): a slot
        keeps its id in the clip; the others are linked to the previous frame's objects
        left; the rest are new objects."""
        background = self.slots - 1
        lut = np.zeros(self.slots, np.int64)
        present = [
            int(s)
            for s in np.flatnonzero(np.bincount(slot_map.ravel(), minlength=self.slots))
            if s != background
        ]
        for slot in present:
            earlier = self.clip.get(slot)
            if earlier is not None and earlier not in lut:
                lut[slot] = earlier
        open_slots = {s for s in present if lut[s] == 0}
        for slot, oid in self._match(slot_map, open_slots, set(lut[lut > 0].tolist())).items():
            lut[slot] = oid
        for slot in present:
            if lut[slot] == 0:
                lut[slot] = self.next_id
                self.next_id += 1
        self.clip.update({s: int(lut[s]) for s in present})
        self.previous = lut[slot_map]
        return lut
