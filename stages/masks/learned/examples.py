"""Training examples for the segmenter: a synthetic video's flow artifact and ground truth ->
per frame pair (features float16, target uint8).

Target per pixel: 1 on an object that moves in the world, 0 on the static scene and static
objects (parked cars and standing people must be negatives: they are what the geometric
masks confuse with movers), ``IGNORE`` on a moving object whose true motion against the
static scene (the generator's ``residual_flow_px``) is below the flow's own noise in that
pair: the flow carries no evidence of it, and calling it either way would teach the network
to guess movers from appearance.
"""

from __future__ import annotations

import numpy as np

from stages.datasets import Dataset, Video
from stages.masks.learned.inference import frame_evidence
from stages.masks.params import MotionParams
from stages.masks.stage import ZarrFlowPairs, gray_frames

IGNORE = 255

#: (features (C, H, W) float16, target (H, W) uint8): one frame pair
Example = tuple[np.ndarray, np.ndarray]


def pair_residual(obj: dict, pair: int) -> float | None:
    """A ``meta.json`` object's true motion against the static scene in ``pair``, px (the
    generator's ``residual_flow_px``); None where it is out of view or not recorded."""
    residuals = obj.get("residual_flow_px") or []
    return residuals[pair] if pair < len(residuals) else None


def invisible_ids(objects: list[dict], pair: int, noise: float) -> set[int]:
    """Ids of moving objects whose mean true motion against the static scene in ``pair``
    is below ``noise`` px (``meta.json`` objects)."""
    out = set()
    for obj in objects:
        value = pair_residual(obj, pair)
        if obj.get("moving") and value is not None and value < noise:
            out.add(int(obj["id"]))
    return out


def video_examples(
    ds: Dataset, video: Video, flow_path: str, params: MotionParams
) -> list[Example]:
    """(features (C, H, W) float16, target (H, W) uint8) for each frame of a video that
    has an outgoing flow, flow at the frames' size (the synthetic datasets' case)."""
    height, width = ds.frame_size(video)
    flows = ZarrFlowPairs(flow_path, None, gray_frames(ds, video, 0, len(video), (height, width)))
    if flows.forward(0).shape[1:] != (height, width):
        raise ValueError(f"{video.name}: frames at {(height, width)}, flow at another size")
    moving = ds.moving_ids(video) or set()
    objects = ds.meta(video).get("objects", [])
    out = []
    for t in range(flows.num_frames):
        evidence = frame_evidence(flows, t, params)
        if evidence is None:  # the last frame, without backward flow
            continue
        ids = ds.instances(video, t)
        target = np.isin(ids, sorted(moving)).astype(np.uint8)
        hidden = invisible_ids(objects, min(t, flows.num_frames - 2), evidence.noise)
        if hidden:
            target[np.isin(ids, sorted(hidden))] = IGNORE
        out.append((evidence.features.astype(np.float16), target))
    return out
