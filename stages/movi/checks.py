"""Checking, on the real data, the one MOVi-E convention the converter cannot see in a schema:
the direction of ``backward_flow``.

Kubric documents (issue #152) that ``backward_flow[t]`` is the motion t-1 -> t, in the same
time direction as ``forward_flow`` ("for constant motion forward and backward flow are
identical"), and ``stages.datasets.movi`` negates it accordingly. No real shard is available
offline to confirm that, so every converted video measures it: a pixel p of frame t lands at
q = p + F_t(p) in frame t+1, where the documented convention gives B_{t+1}(q) = +F_t(p) and the
common one (flow from t+1 back to t) gives -F_t(p). The median error of each hypothesis is
kept in meta.json and the converter warns when the documented one is clearly the worse.
"""

from __future__ import annotations

import numpy as np

#: the documented direction is doubted when the other one's error is below this share of it
DOUBT_RATIO = 0.5


def backward_direction_errors(forward: np.ndarray, backward: np.ndarray) -> dict[str, float]:
    """Median |B - F| ("same_direction") and |B + F| ("opposite_direction") in pixels over the
    pixels that stay inside the frame; (T, H, W, 2) flows in (delta_row, delta_col).
    Occluded pixels disagree under both, and move the medians little."""
    f, b = forward[:-1].astype(np.float32), backward[1:].astype(np.float32)
    pairs, h, w, _ = f.shape
    rows = np.rint(np.arange(h, dtype=np.float32)[:, None] + f[..., 0]).astype(np.int64)
    cols = np.rint(np.arange(w, dtype=np.float32)[None, :] + f[..., 1]).astype(np.int64)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    t = np.broadcast_to(np.arange(pairs)[:, None, None], inside.shape)[inside]
    landed = b[t, rows[inside], cols[inside]]
    moved = f[inside]
    if not len(moved):
        return {"same_direction": float("nan"), "opposite_direction": float("nan")}
    return {
        "same_direction": round(float(np.median(np.linalg.norm(landed - moved, axis=-1))), 4),
        "opposite_direction": round(float(np.median(np.linalg.norm(landed + moved, axis=-1))), 4),
    }


def doubts_documented_direction(errors: dict[str, float]) -> bool:
    return errors["opposite_direction"] < DOUBT_RATIO * errors["same_direction"]
