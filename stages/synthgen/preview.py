"""A picture of a synthetic dataset: frames, GT masks with moving/static marked, GT flow.

    .venv/bin/python -m stages.synthgen.preview --root data/synth --out docs/img/synth_examples.png

Reads the dataset through the ``synth`` adapter, so it shows what the pipeline will see.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from stages.datasets import open_dataset

#: moving objects in warm colours, static ones in cool colours
WARM = np.array([[230, 60, 40], [250, 150, 30], [240, 220, 40], [220, 60, 160]], np.uint8)
COOL = np.array([[40, 110, 230], [40, 200, 200], [90, 200, 90], [150, 120, 240]], np.uint8)


def mask_panel(ids: np.ndarray, moving: set[int]) -> np.ndarray:
    """GT ids coloured by motion, each object outlined and labelled M (moving) / S (static)."""
    panel = np.zeros((*ids.shape, 3), np.uint8)
    for k, ident in enumerate(i for i in np.unique(ids) if i):
        palette = WARM if ident in moving else COOL
        panel[ids == ident] = palette[k % len(palette)]
    return panel


def label(panel: np.ndarray, ids: np.ndarray, moving: set[int], scale: int) -> None:
    """Write M/S at each object's centre and outline it (on an upscaled panel)."""
    for ident in (i for i in np.unique(ids) if i):
        mask = (ids == ident).astype(np.uint8)
        big = cv2.resize(mask, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(panel, contours, -1, (255, 255, 255), 1)
        ys, xs = np.nonzero(mask)
        org = (int(xs.mean() * scale) - 5, int(ys.mean() * scale) + 5)
        text = "M" if ident in moving else "S"
        cv2.putText(panel, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3)
        cv2.putText(panel, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)


def flow_panel(flow: np.ndarray, max_px: float) -> np.ndarray:
    """Flow as colour: hue = direction, brightness = magnitude (saturating at max_px)."""
    dx, dy = flow
    hsv = np.zeros((*dx.shape, 3), np.uint8)
    hsv[..., 0] = ((np.degrees(np.arctan2(dy, dx)) % 360) / 2).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = (np.clip(np.hypot(dx, dy) / max_px, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def preview(root: Path, out: Path, videos: int = 4, scale: int = 2) -> Path:
    ds = open_dataset("synth", root)
    chosen = [v for split in ds.splits() for v in ds.videos(split)][:videos]
    rows = []
    for video in chosen:
        t = (len(video) - 1) // 2
        ids = ds.instances(video, t)
        moving = ds.moving_ids(video)
        flow = ds.gt_flow(video)[t]
        panels = [ds.frame(video, t), mask_panel(ids, moving), flow_panel(flow, 8.0)]
        big = [
            cv2.resize(p, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) for p in panels
        ]
        label(big[1], ids, moving, scale)
        cv2.putText(big[0], video.name, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        gap = np.full((big[0].shape[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([big[0], gap, big[1], gap, big[2]], axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    out.parent.mkdir(parents=True, exist_ok=True)
    picture = cv2.cvtColor(np.concatenate(rows[:-1], axis=0), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(out), picture, [cv2.IMWRITE_PNG_COMPRESSION, 9])  # small file for docs/
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="a dataset written by synth")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--videos", type=int, default=4)
    args = parser.parse_args()
    print(preview(args.root, args.out, args.videos))


if __name__ == "__main__":
    main()
