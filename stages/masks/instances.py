"""From a frame's moving pixels to instance masks: clean, separate, split, keep, number.

Everything is on label maps with OpenCV (morphology, connected components) and numpy
(bincount over labels), never a Python loop over pixels; the only loops are over the few
components of a frame.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from scipy import ndimage

from stages.masks.params import InstanceParams

KMEANS_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.01)
MAX_SPLIT_DEPTH = 2
KMEANS_SAMPLES = 1024
KMEANS_SEED = 0
CONTACT_MIN_PIXELS = 5


@lru_cache(maxsize=8)
def disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def clean(moving: np.ndarray, params: InstanceParams) -> np.ndarray:
    """Opening removes speckle noise of the flow; closing re-joins an object cut by occlusion
    pixels that failed the forward-backward check. (H, W) uint8 0/1."""
    mask = moving.astype(np.uint8)
    if params.open_radius > 0:
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, disk(params.open_radius))
    if params.close_radius > 0:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disk(params.close_radius))
    return mask


def components(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Connected components (8-connectivity) of at least ``min_area`` px; (H, W) int32 ids
    1..n in scan order, 0 = background."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
    big = big[big > 0]
    if big.size == n - 1:  # nothing to drop: skip the relabelling pass over the frame
        return labels
    keep = np.zeros(n, np.int32)
    keep[big] = np.arange(1, big.size + 1, dtype=np.int32)
    return keep[labels]


def _two_means(vectors: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """2-means of (N, 2) flow vectors -> (assignment of all N, separation / pooled spread,
    separation). Fitted on an evenly strided subsample: a large object's thousands of
    vectors add nothing to two centres but time."""
    if len(vectors) < 4:
        return None
    sample = np.ascontiguousarray(vectors[:: max(1, len(vectors) // KMEANS_SAMPLES)])
    cv2.setRNGSeed(KMEANS_SEED)  # k-means++ draws: the same split whatever ran before
    _compactness, labels, centres = cv2.kmeans(
        sample, 2, None, KMEANS_CRITERIA, 2, cv2.KMEANS_PP_CENTERS
    )
    labels = labels.ravel()
    distance = float(np.linalg.norm(centres[0] - centres[1]))
    spread = 0.0
    for k in (0, 1):
        members = sample[labels == k]
        if len(members) == 0:
            return None
        spread += float(((members - centres[k]) ** 2).sum(axis=1).mean())
    d0 = ((vectors - centres[0]) ** 2).sum(axis=1)
    d1 = ((vectors - centres[1]) ** 2).sum(axis=1)
    return (d1 < d0).astype(np.uint8), distance / max(np.sqrt(spread), 1e-6), distance


def _pixels(
    labels: np.ndarray, box: tuple[slice, slice], comp: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a component, searched only inside its bounding box."""
    ys, xs = np.nonzero(labels[box] == comp)
    return ys + box[0].start, xs + box[1].start


def split_by_flow(
    labels: np.ndarray, flow: np.ndarray, params: InstanceParams
) -> tuple[np.ndarray, list[tuple[slice, slice] | None]]:
    """Split components that hold two differently moving objects (touching cars).

    A rigid object's flow varies smoothly (a 2-means cut of a uniform gradient gives a
    separation of about 2.5 pooled spreads); two objects give two tight, distant clusters.
    A split is kept only if each cluster is also a spatially coherent region of at least
    min_area px, which a cut through one smoothly moving object rarely gives.

    Returns the new labels and, for id i, ``boxes[i - 1]``: a region that holds all of it
    (what ``ndimage.find_objects`` gives, kept up to date instead of recomputed).
    """
    boxes = ndimage.find_objects(labels)
    if not boxes:
        return labels, boxes
    out = labels.copy()
    queue = [(i + 1, 0, box) for i, box in enumerate(boxes) if box is not None]
    while queue:
        comp, depth, box = queue.pop()
        ys, xs = _pixels(out, box, comp)
        if ys.size < 2 * params.min_area or depth >= MAX_SPLIT_DEPTH:
            continue
        vectors = np.ascontiguousarray(flow[:, ys, xs].T, dtype=np.float32)
        result = _two_means(vectors)
        if result is None:
            continue
        assign, ratio, distance = result
        if ratio < params.split_ratio or distance < params.split_min_distance:
            continue
        y0, x0 = ys.min(), xs.min()
        cut = np.zeros((ys.max() - y0 + 1, xs.max() - x0 + 1), np.uint8)
        cut[ys - y0, xs - x0] = assign + 1
        parts = []
        for k in (1, 2):
            sub = components(clean(cut == k, params), params.min_area)
            sub[cut == 0] = 0  # a closing may reach outside the component: stay inside
            parts.extend(sub == i for i in range(1, int(sub.max()) + 1))
        if len(parts) < 2:
            continue
        sub_box = (slice(y0, y0 + cut.shape[0]), slice(x0, x0 + cut.shape[1]))
        region = out[sub_box]
        region[region == comp] = 0  # pixels in no coherent part are dropped: precision
        for j, part in enumerate(parts):
            if j == 0:
                new = comp
                boxes[comp - 1] = sub_box
            else:
                boxes.append(sub_box)
                new = len(boxes)
            region[part] = new
            queue.append((new, depth + 1, sub_box))
    return out, boxes


def ground_contact_static(
    labels: np.ndarray,
    boxes: list[tuple[slice, slice] | None],
    flow: np.ndarray,
    confident: np.ndarray,
    params: InstanceParams,
) -> np.ndarray:
    """Which components (bool per id, index 0 unused) move like the ground they stand on:
    static objects.

    An upright object is at the depth of its ground contact, so a static one shares the
    camera-induced flow of the ground just below it, whatever its parallax against the
    far background (which is what made it stand out). A moving object differs there by
    its own motion. Compares the median flow of the component's bottom quarter with that
    of a band of ground ``contact_gap`` px below it (free of other masks, confident);
    components with no such band (touching the frame bottom, standing on another mask)
    cannot be tested and are kept. ``boxes[i - 1]`` holds component i (``split_by_flow``).
    """
    static = np.zeros(len(boxes) + 1, bool)
    if not boxes or params.contact_min_diff <= 0:
        return static
    h = labels.shape[0]
    for comp, box in enumerate(boxes, start=1):
        if box is None:
            continue
        ys, xs = _pixels(labels, box, comp)
        bottom = ys.max()
        base = ys >= bottom - max(1, (bottom - ys.min() + 1) // 4)
        top, stop = (
            bottom + 1 + params.contact_gap,
            bottom + 1 + params.contact_gap + params.contact_band,
        )
        if top >= h:
            continue
        x0, x1 = xs[base].min(), xs[base].max() + 1
        band = (labels[top:stop, x0:x1] == 0) & confident[top:stop, x0:x1]
        if band.sum() < CONTACT_MIN_PIXELS:
            continue
        ground = np.median(flow[:, top:stop, x0:x1][:, band], axis=1)
        own = np.median(flow[:, ys[base], xs[base]], axis=1)
        static[comp] = float(np.hypot(*(own - ground))) < params.contact_min_diff
    return static


def pull(mask_b: np.ndarray, landing: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """A mask of frame b seen from frame a: mask_b at ``landing`` = (x + u, y + v) of the
    flow a -> b (nearest, 0 outside)."""
    return cv2.remap(
        mask_b.astype(np.uint8),
        landing[0],
        landing[1],
        cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def push(labels_a: np.ndarray, flow_ab: np.ndarray) -> np.ndarray:
    """A label map of frame a carried to frame b along flow_ab (forward splatting).

    Splatting leaves one-pixel holes where the target spreads (objects approaching); a
    closing restricted to the splatted labels fills them without growing the outline.
    """
    h, w = labels_a.shape
    ys, xs = np.nonzero(labels_a)
    out = np.zeros((h, w), np.uint16)
    if ys.size == 0:
        return out
    tx = np.rint(xs + flow_ab[0, ys, xs]).astype(np.int64)
    ty = np.rint(ys + flow_ab[1, ys, xs]).astype(np.int64)
    inside = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
    out[ty[inside], tx[inside]] = labels_a[ys[inside], xs[inside]]
    filled = cv2.dilate(out, disk(1))
    holes = (out == 0) & (
        cv2.morphologyEx((out > 0).astype(np.uint8), cv2.MORPH_CLOSE, disk(1)) > 0
    )
    out[holes] = filled[holes]
    return out


def persistent(labels: np.ndarray, neighbours: list[np.ndarray], frac: float) -> np.ndarray:
    """Which components (bool per id) a neighbouring frame's warped moving pixels support.

    Flow noise flickers from frame to frame; a moving object persists. With no neighbour
    (a one-pair video) nothing can be checked and every component is supported.
    """
    count = int(labels.max())
    if not neighbours:
        return np.ones(count + 1, bool)
    where = np.flatnonzero(labels)  # components are a few % of the frame: index them once
    ids = labels.ravel()[where]
    area = np.bincount(ids, minlength=count + 1)
    support = np.zeros(count + 1, bool)
    for moving in neighbours:
        overlap = np.bincount(ids[moving.ravel()[where] > 0], minlength=count + 1)
        support |= overlap >= frac * np.maximum(area, 1)
    return support


def number(
    labels: np.ndarray, min_area: int, max_masks: int, keep: np.ndarray | None = None
) -> np.ndarray:
    """Ids 1..M consecutive, largest first; components not in ``keep`` (bool per id), under
    min_area or beyond max_masks are dropped. Returns uint16."""
    where = np.flatnonzero(labels)  # a few % of the frame: index it once, not three times
    ids = labels.ravel()[where]
    out = np.zeros(labels.shape, np.uint16)
    if ids.size == 0:
        return out
    area = np.bincount(ids)
    area[0] = 0
    if keep is not None:
        area[~keep] = 0
    order = np.argsort(-area, kind="stable")
    order = order[area[order] >= max(min_area, 1)][:max_masks]
    new_ids = np.zeros(area.size, np.uint16)
    new_ids[order] = np.arange(1, order.size + 1, dtype=np.uint16)
    out.ravel()[where] = new_ids[ids]
    return out
