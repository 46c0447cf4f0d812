"""Motion-mask quality on a synthetic dataset, split by camera kind (driving / still / flat).

    .venv/bin/python bench/street_masks.py --workspace WS --root DATA [--masks ID]
        [--min-px 50] [--visible-px 0.5] [--json FILE]
    .venv/bin/python bench/street_masks.py --pool FILE [FILE ...]

Scores a masks artifact of the ``synth`` workspace (the newest, or ``--masks ID``) per frame
against the GT as ``diod masks --report`` does (IoU > 0.5), separately for the driving and
the still-camera videos (``meta.json`` ``camera.kind``; ``flat`` for the flat world). Three
reference sets per kind, as docs/masks.md reports them: every GT object (the precision
``P``: masks matching a moving object over all masks); the moving objects of at least
``--min-px`` pixels (``R50``: a mask is never smaller than the masks' default ``--min-area``,
and the street world keeps objects of any size); and those that also move at least
``--visible-px`` px against the static scene in that frame's pair (``Rvis``, the
generator's ``residual_flow_px``: a walker along the sidewalk seen from a car moves 0.1 px
per frame). ``--json`` writes the raw counts, which add up across seeds: ``--pool`` prints
the scores of several such files together.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from stages import zarrstore
from stages.artifacts import Artifact, ArtifactStore
from stages.datasets import open_dataset
from stages.masks.learned.examples import pair_residual
from stages.masks.quality import MaskCounts, frame_counts

#: reference sets, in print order
REFERENCES = ("all", "R50", "Rvis")


def _large(ids: np.ndarray, min_px: int) -> np.ndarray:
    """GT ids with objects under ``min_px`` pixels removed (set to 0)."""
    sizes = np.bincount(ids.ravel())
    return np.where(sizes[ids] >= min_px, ids, 0)


def visibly_moving(objects: list[dict], pair: int, visible_px: float) -> set[int]:
    """Moving ids whose true motion against the static scene in ``pair`` is at least
    ``visible_px`` (``meta.json`` objects)."""
    out = set()
    for obj in objects:
        value = pair_residual(obj, pair)
        if obj.get("moving") and value is not None and value >= visible_px:
            out.add(int(obj["id"]))
    return out


def _empty() -> dict[str, dict[str, MaskCounts]]:
    """Counts per camera kind (created on first use) and reference set."""
    return defaultdict(lambda: {name: MaskCounts() for name in REFERENCES})


def score(
    artifact: Artifact, root: Path, min_px: int, visible_px: float
) -> dict[str, dict[str, MaskCounts]]:
    """Counts per camera kind and reference set."""
    ds = open_dataset("synth", root)
    totals = _empty()
    for split in ds.splits():
        for video in ds.videos(split):
            meta = ds.meta(video)
            kind = meta.get("camera", {}).get("kind", "flat")
            masks = zarrstore.open_video(artifact, "masks.zarr", split, video.name)["masks"][:]
            moving = ds.moving_ids(video)
            counts = totals[kind]
            for t in range(len(video)):
                gt = ds.instances(video, t)
                large = _large(gt, min_px)
                pair = min(t, len(video) - 2)
                visible = visibly_moving(meta.get("objects", []), pair, visible_px)
                counts["all"] += frame_counts(masks[t], gt, moving)
                counts["R50"] += frame_counts(masks[t], large, moving)
                counts["Rvis"] += frame_counts(masks[t], large, moving & visible)
    return totals


def report(totals: dict[str, dict[str, MaskCounts]]) -> None:
    """One line per camera kind: P, then each recall with its number of GT objects."""
    for kind, counts in sorted(totals.items()):
        precision = counts["all"].scores()["moving"]
        recalls = [counts[name].scores()["moving"] for name in REFERENCES[1:]]
        print(
            f"{kind}: {counts['all'].frames} frames, P {precision['precision']:.3f} "
            f"({counts['all'].masks} masks), "
            + ", ".join(
                f"{name} {r['recall']:.3f} ({r['gt']} GT)"
                for name, r in zip(REFERENCES[1:], recalls, strict=True)
            )
        )


def pooled(paths: list[Path]) -> dict[str, dict[str, MaskCounts]]:
    """The counts of several ``--json`` files added up."""
    totals = _empty()
    for path in paths:
        for kind, counts in json.loads(path.read_text()).items():
            for name, data in counts.items():
                totals[kind][name] += MaskCounts.from_dict(data)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, nargs="+", help="--json files to score together")
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--root", type=Path)
    parser.add_argument("--masks", default=None, help="artifact id (default: the newest)")
    parser.add_argument("--min-px", type=int, default=50)
    parser.add_argument("--visible-px", type=float, default=0.5)
    parser.add_argument("--json", type=Path, default=None, help="write the counts here")
    args = parser.parse_args()
    if args.pool:
        report(pooled(args.pool))
        return
    if args.workspace is None or args.root is None:
        parser.error("--workspace and --root are required (or --pool)")
    artifact = ArtifactStore(args.workspace).resolve("synth", "masks", args.masks)
    totals = score(artifact, args.root, args.min_px, args.visible_px)
    print(f"masks {artifact.id} on {args.root} (IoU > 0.5)")
    report(totals)
    if args.json:
        data = {
            kind: {k: c.to_dict() for k, c in counts.items()} for kind, counts in totals.items()
        }
        args.json.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
