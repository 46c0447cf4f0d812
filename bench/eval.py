"""Scoring speed: 200 KITTI-sized frames (92x312, 45 slots) on one CPU core (target < 2 s).

Times what `diod eval` computes once the maps are in memory: GT resized from 375x1242 to
the prediction size, compaction, contingency tables, ARI, IoU, dataset-level matching, the
summary and the per-frame rows. Reading PNG/Zarr is not included. Two layouts: 200
one-frame videos (the KITTI protocol) and 40 five-frame videos scored per clip (TRI-PD).
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402

from stages.metrics import Evaluation, resize_nearest  # noqa: E402

FRAMES, SRC, SIZE, SLOTS, OBJECTS, REPEATS = 200, (375, 1242), (92, 312), 45, 10, 5


def make_data(rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """GT boxes at source resolution; predictions = a Voronoi partition into 44 slots with
    most GT objects painted on a slot (so matches, misses and false positives all occur)."""
    gts, preds = [], []
    h, w = SIZE
    yy, xx = np.mgrid[:h, :w]
    for _ in range(FRAMES):
        gt = np.zeros(SRC, np.int64)
        for ident in range(1, OBJECTS + 1):
            bh, bw = rng.integers(8, 150), rng.integers(8, 300)
            y, x = rng.integers(0, SRC[0] - bh), rng.integers(0, SRC[1] - bw)
            gt[y : y + bh, x : x + bw] = ident
        seeds = rng.integers(0, (h, w), (SLOTS - 1, 2))
        dist = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
        pred = dist.argmin(-1).astype(np.uint8)
        small = resize_nearest(gt, SIZE)
        for ident in range(1, OBJECTS + 1):
            if rng.random() < 0.7:
                pred[small == ident] = rng.integers(0, SLOTS - 1)
        pred[(small == 0) & (rng.random(SIZE) < 0.5)] = SLOTS - 1
        gts.append(gt)
        preds.append(pred)
    return gts, preds


def score(gts, preds, videos: int, clip_len: int | None) -> float:
    start = time.perf_counter()
    ev = Evaluation(clip_len)
    per = FRAMES // videos
    scores = np.ones((per, SLOTS), np.float32)
    for v in range(videos):
        gt = np.stack([resize_nearest(g, SIZE) for g in gts[v * per : (v + 1) * per]])
        pred = np.stack(preds[v * per : (v + 1) * per])
        ev.add_video(f"v{v}", gt, pred, background=SLOTS - 1, scores=scores)
    ev.summary()
    ev.per_frame()
    return time.perf_counter() - start


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    gts, preds = make_data(np.random.default_rng(0))
    for label, videos, clip_len in (
        ("200 one-frame videos, ARI per frame (KITTI)", FRAMES, None),
        ("40 five-frame videos, ARI per 5-frame clip (TRI-PD)", FRAMES // 5, 5),
    ):
        times = sorted(score(gts, preds, videos, clip_len) for _ in range(REPEATS))
        print(
            f"eval {FRAMES} frames {SIZE[0]}x{SIZE[1]}, {SLOTS} slots, 1 core, {label}: "
            f"median {times[REPEATS // 2]:.3f} s (min {times[0]:.3f} s, target < 2 s)"
        )


if __name__ == "__main__":
    main()
