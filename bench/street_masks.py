"""Motion-mask quality on a street dataset, split by camera kind (driving / still).

    .venv/bin/python bench/street_masks.py --workspace WS --root DATA [--min-px 50]

Reads the newest masks artifact of the ``synth`` workspace and scores it per frame against
the GT as ``diod masks --report`` does (IoU > 0.5), separately for the driving and the
still-camera videos (``meta.json`` ``camera.kind``); ``--min-px`` also scores against only
the GT objects of at least that many pixels (the masks' default ``--min-area``), since the
street world keeps objects of any size.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from stages import zarrstore
from stages.artifacts import ArtifactStore
from stages.datasets import open_dataset
from stages.masks.quality import MaskCounts, format_scores, frame_counts


def _large(ids: np.ndarray, min_px: int) -> np.ndarray:
    """GT ids with objects under ``min_px`` pixels removed (set to 0)."""
    sizes = np.bincount(ids.ravel())
    return np.where(sizes[ids] >= min_px, ids, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--min-px", type=int, default=50)
    args = parser.parse_args()
    artifact = ArtifactStore(args.workspace).latest("synth", "masks")
    ds = open_dataset("synth", args.root)
    totals: dict[str, MaskCounts] = defaultdict(MaskCounts)
    for split in ds.splits():
        for video in ds.videos(split):
            kind = ds.meta(video)["camera"]["kind"]
            masks = zarrstore.open_video(artifact, "masks.zarr", split, video.name)["masks"][:]
            moving = ds.moving_ids(video)
            for t in range(len(video)):
                gt = ds.instances(video, t)
                totals[kind] = totals[kind] + frame_counts(masks[t], gt, moving)
                large = f"{kind}, GT >= {args.min_px} px"
                totals[large] = totals[large] + frame_counts(
                    masks[t], _large(gt, args.min_px), moving
                )
    print(f"masks {artifact.id} on {args.root} (IoU > 0.5)")
    for name, counts in sorted(totals.items()):
        print(f"{name}: {counts.frames} frames")
        print("\n".join(format_scores(counts.scores())))


if __name__ == "__main__":
    main()
