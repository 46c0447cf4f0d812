"""In-training validation: the eval stage's metrics on the val split's first videos.

Runs the model exactly as ``diod export`` does (clips of T, argmax over slots) and scores
with ``stages.metrics`` against the dataset's GT instances, so the curve in the logs is
the number ``diod eval`` would print for that checkpoint (on the videos used).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from stages import metrics
from stages.datasets import Dataset
from stages.model import DIOD
from stages.model.encoder import ResNet18Encoder
from stages.predict import Predictor, argmax_scores, frame_map_size
from stages.progress import log

HEADLINE = ("fg_ari", "all_ari", "f1_50")


def make_validator(
    ds: Dataset,
    split: str,
    input_size: tuple[int, int],
    clip_length: int,
    max_videos: int,
    device: torch.device,
    precision: str,
    crop_top: float = 0.0,
) -> Callable[[DIOD, int], dict[str, float]] | None:
    """A ``validate(model, step)`` for the loop, or None (with a log line) if the split is
    absent or has no GT instances."""
    if split not in ds.splits():
        log.info("no '%s' split: training without validation", split)
        return None
    videos = ds.videos(split)[:max_videos]
    if not videos or not videos[0].instances:
        log.info("split '%s' has no GT instances: training without validation", split)
        return None
    size = frame_map_size(input_size, crop_top, ResNet18Encoder.STRIDE)
    # GT is read once; frames are decoded again at each validation (cheap next to the model)
    gts = [
        np.stack([metrics.resize_nearest(ds.instances(v, i), size) for i in range(len(v))])
        for v in videos
    ]

    def validate(model: DIOD, step: int) -> dict[str, float]:
        predictor = Predictor(model, input_size, crop_top, clip_length, 4, device, precision)
        evaluation = metrics.Evaluation()
        for video, gt in zip(videos, gts, strict=True):
            pred = np.zeros(gt.shape, np.int64)
            scores = np.zeros((len(video), model.config.num_slots))
            for first, maps in predictor(predictor.video_inputs(ds, video), len(video)):
                ids, s = argmax_scores(maps)
                pred[first : first + len(maps)] = ids.cpu().numpy()
                scores[first : first + len(maps)] = s.cpu().numpy()
            evaluation.add_video(
                video.name,
                gt,
                pred,
                background=model.config.background_slot,
                scores=scores,
                moving_ids=ds.moving_ids(video),
            )
        summary = evaluation.summary()
        out = {k: float(summary[k]) for k in HEADLINE}
        motion = summary.get("by_motion") or {}
        if "static" in motion:
            out["static_recall"] = float(motion["static"]["recall"])
        return {k: v for k, v in out.items() if not math.isnan(v)}

    return validate
