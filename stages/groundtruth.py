"""Ground-truth instance maps at the prediction resolution, prepared as each protocol does.

``diod`` reads the adapter's ids and resizes them by pixel-centre nearest neighbour
(``metrics.resize_nearest``). The authors' scripts (``paper``) resize with the top-left
aligned nearest neighbour of OpenCV and torch, and prepare TRI-PD and KITTI in their own
ways (docs/eval.md, "Protocols"); each preparation here is one function with the signature
of ``Prepare``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from stages import metrics
from stages.datasets import Dataset, Video
from stages.datasets.imageio import read_label_map
from stages.errors import UserError

#: TRI-PD in the authors' scripts: label maps halved (sides rounded up) ...
TRIPD_SCALE = 0.5
#: ... the top rows of the half-size map dropped (the model's input crop, 128 of 608 rows) ...
TRIPD_CROP_ROWS = 128
#: ... and an instance becomes an object once it covers more pixels than this in a frame
TRIPD_MIN_PIXELS = 500


@dataclass(frozen=True)
class GroundTruth:
    """A video's GT at the prediction resolution and which of its ids move (None: unknown)."""

    maps: np.ndarray  # (T, h, w) ids, 0 = background
    moving_ids: set[int] | None


#: (dataset, video, dataset frame indices in prediction order, (h, w)) -> GroundTruth
Prepare = Callable[[Dataset, Video, Sequence[int], tuple[int, int]], GroundTruth]


def _no_gt(ds: Dataset, video: Video) -> UserError:
    return UserError(
        f"{ds.name} dataset at {ds.root}: video '{video.split}/{video.name}' has no GT "
        "instances, so it cannot be scored"
    )


def _instances(ds: Dataset, video: Video, index: int) -> np.ndarray:
    gt = ds.instances(video, index)
    if gt is None:
        raise _no_gt(ds, video)
    return gt


def floor_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) -> (..., h, w), output pixel i sampling source pixel floor(i * H / h):
    torch's ``interpolate(mode="nearest")`` (exact integer arithmetic; torch's float32 scale
    gives the same index wherever H / h is an integer, as on TRI-PD's 480 -> 120)."""
    src_h, src_w = labels.shape[-2:]
    rows = np.arange(size[0]) * src_h // size[0]
    cols = np.arange(size[1]) * src_w // size[1]
    return labels[..., rows[:, None], cols[None, :]]


def cv2_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) -> (h, w) by OpenCV's INTER_NEAREST, as the authors resize label maps: source
    index floor(i * (1 / (h / H))) in double precision, which is not always floor(i * H / h)
    (370 x 1224 -> 92 x 312: row 46 samples 184, not 185), hence OpenCV itself."""
    if labels.size and (labels.min() < 0 or labels.max() >= 2**31):
        raise UserError(f"GT ids outside [0, 2^31): {labels.min()}..{labels.max()}")
    out = cv2.resize(labels.astype(np.int32), (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return out.astype(np.int64)


def centred_gt(
    ds: Dataset, video: Video, indices: Sequence[int], size: tuple[int, int]
) -> GroundTruth:
    """Ours: the adapter's ids, pixel-centre nearest neighbour (``metrics.resize_nearest``)."""
    maps = [metrics.resize_nearest(_instances(ds, video, i), size) for i in indices]
    return GroundTruth(np.stack(maps), ds.moving_ids(video))


def floor_gt(
    ds: Dataset, video: Video, indices: Sequence[int], size: tuple[int, int]
) -> GroundTruth:
    """The authors' generic form: the adapter's ids, top-left nearest (``floor_nearest``)."""
    maps = [floor_nearest(_instances(ds, video, i), size) for i in indices]
    return GroundTruth(np.stack(maps), ds.moving_ids(video))


def kitti_raw_gt(
    ds: Dataset, video: Video, indices: Sequence[int], size: tuple[int, int]
) -> GroundTruth:
    """KITTI as the authors score it: the RAW 16-bit values of the instance PNGs (semantic
    class * 256 + instance), resized by OpenCV straight to the map size.

    Raw values keep every "stuff" region (road, sky, building: instance 0 of a nonzero
    class) as its own GT id, so stuff counts as foreground clusters and as F1 GT segments;
    only value 0 (class "unlabeled") is background. The adapter's ``instances`` folds stuff
    into the background (our protocol), so the files are read here by their paths.
    """
    if not video.instances:
        raise _no_gt(ds, video)
    maps = [cv2_nearest(read_label_map(video.instances[i]), size) for i in indices]
    return GroundTruth(np.stack(maps), None)


def relabel_by_size(
    frames: Iterator[np.ndarray], mapping: dict[int, int], min_pixels: int = TRIPD_MIN_PIXELS
) -> Iterator[np.ndarray]:
    """TRI-PD's per-video relabelling: walking the frames in order, an id gets the next
    label (1, 2, ...) the first time it covers more than ``min_pixels`` pixels in a frame;
    until then, and for ids that never do, it is background (0). Yields each frame
    relabelled; ``mapping`` (id -> label, given as ``{0: 0}``: id 0 stays background) grows
    as the frames go, so the caller has the whole video's once they are all read.

    Because the mapping grows, an id is 0 in the frames before the one where it first
    passes the threshold and has its label from there on, as in the authors' loader. Within
    a frame, new ids are numbered in increasing id order.
    """
    for frame in frames:
        compact, ids = metrics.compact_labels(frame)
        counts = np.bincount(compact.ravel(), minlength=len(ids))
        for value, count in zip(ids.tolist(), counts.tolist(), strict=True):
            if value not in mapping and count > min_pixels:
                mapping[value] = len(mapping)
        yield np.array([mapping.get(v, 0) for v in ids.tolist()])[compact]


def tripd_paper_gt(
    ds: Dataset, video: Video, indices: Sequence[int], size: tuple[int, int]
) -> GroundTruth:
    """TRI-PD as the authors score it: each label map halved by OpenCV nearest (sides
    rounded up), its top ``TRIPD_CROP_ROWS`` rows dropped (the region the model never sees,
    which is therefore not scored), ids relabelled per video by ``relabel_by_size`` (every
    frame from the first, in order), then resized to the map size by torch's nearest.

    ``size`` is the size of the maps of the model's input region (the prediction's rows
    standing for the cropped top are left out by the caller).
    """

    def cropped_halves() -> Iterator[np.ndarray]:
        for i in range(max(indices) + 1):
            gt = _instances(ds, video, i)
            half = (math.ceil(gt.shape[0] * TRIPD_SCALE), math.ceil(gt.shape[1] * TRIPD_SCALE))
            yield cv2_nearest(gt, half)[TRIPD_CROP_ROWS:]

    wanted = set(indices)
    maps: dict[int, np.ndarray] = {}
    mapping = {0: 0}
    for i, frame in enumerate(relabel_by_size(cropped_halves(), mapping)):
        if i in wanted:
            maps[i] = floor_nearest(frame, size)
    moving = ds.moving_ids(video)
    if moving is not None:
        moving = {mapping[m] for m in moving if mapping.get(m, 0)}
    return GroundTruth(np.stack([maps[i] for i in indices]), moving)
