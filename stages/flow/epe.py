"""End-point error of estimated flow against ground truth, the standard flow accuracy measure.

EPE = mean over valid pixels of the Euclidean distance between estimated and true (dx, dy).
The "zero-flow EPE" (the error of predicting no motion, i.e. the mean GT flow magnitude) is
reported beside it: an EPE only means something relative to that baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stages.artifacts import Artifact
from stages.datasets import Dataset
from stages.zarrstore import FLOW_STORE, open_video, video_names


def endpoint_errors(
    pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None
) -> tuple[float, int]:
    """(sum of per-pixel EPE, number of pixels) for (..., 2, H, W) flows; sums aggregate
    across videos exactly, means would not."""
    dist = np.sqrt(((pred.astype(np.float64) - gt) ** 2).sum(axis=-3))
    if valid is not None:
        dist = dist[np.broadcast_to(valid, dist.shape)]
    return float(dist.sum()), int(dist.size)


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, 2, h, w) flow -> (N, 2, H, W): bilinear, vectors scaled by the resize factors."""
    n, _, h, w = flow.shape
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(flow, np.float32)), size=size, mode="bilinear"
    )
    scale = torch.tensor([size[1] / w, size[0] / h]).view(1, 2, 1, 1)
    return (out * scale).numpy()


def flow_epe_report(artifact: Artifact, dataset: Dataset) -> dict[str, Any] | None:
    """Per-video and overall forward-flow EPE of a flow artifact against the dataset's GT flow
    (at GT resolution), or None when the dataset has no GT flow."""
    videos: dict[str, dict[str, float]] = {}
    totals = np.zeros(3)  # epe sum, zero-flow epe sum, pixels
    for split in artifact.params["splits"]:
        for name in video_names(artifact, FLOW_STORE, split):
            gt = dataset.gt_flow(dataset.video(split, name))
            if gt is None:
                return None
            if len(gt) == 0:
                continue
            pred = resize_flow(
                open_video(artifact, FLOW_STORE, split, name)["forward"][:], gt.shape[-2:]
            )
            err, pixels = endpoint_errors(pred, gt)
            zero, _ = endpoint_errors(np.zeros_like(gt), gt)
            videos[f"{split}/{name}"] = {
                "epe": err / pixels,
                "zero_flow_epe": zero / pixels,
                "pairs": len(gt),
            }
            totals += (err, zero, pixels)
    if not videos:
        return None
    return {
        "epe": totals[0] / totals[2],
        "zero_flow_epe": totals[1] / totals[2],
        "videos": videos,
    }
