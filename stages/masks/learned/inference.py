"""The segmenter in the masks pipeline: frame t of a video -> ``motion.PairMotion`` whose
moving pixels are where the network's probability exceeds a threshold; everything after
(cleaning, components, splitting, persistence, ids) is the geometric pipeline's."""

from __future__ import annotations

import numpy as np
import torch

from stages.masks.geometric import FlowPairs, pair_of_frame
from stages.masks.learned.features import PairEvidence, pair_evidence
from stages.masks.learned.network import MotionSegmenter
from stages.masks.motion import PairMotion
from stages.masks.params import MotionParams


def frame_evidence(flows: FlowPairs, t: int, params: MotionParams) -> PairEvidence | None:
    """The segmenter's evidence for frame t of a video (None: no outgoing flow). The
    previous pair (t -> t-1) is used where backward flow exists and frame t's own pair is
    t -> t+1 (the last frame is scored from the pair back to T-2, as the geometric
    masks)."""
    pair = pair_of_frame(flows, t)
    if pair is None:
        return None
    previous = None
    if flows.has_backward and 1 <= t <= flows.num_frames - 2:
        previous = (flows.backward(t - 1), flows.forward(t - 1))
    landed = t + 1 if t <= flows.num_frames - 2 else t - 1
    return pair_evidence(
        pair[0], pair[1], params, flows.image(t), previous, flows.image(landed), flows.image(t - 1)
    )


class LearnedMotion:
    """``geometric.MotionOf`` by a trained segmenter: moving = probability > threshold."""

    def __init__(
        self,
        model: MotionSegmenter,
        params: MotionParams,
        threshold: float = 0.5,
        device: str | torch.device = "cpu",
    ):
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.params = params
        self.threshold = threshold

    def probability(self, features: np.ndarray) -> np.ndarray:
        """(C, H, W) features -> (H, W) probability of moving. The features are made on the
        CPU (OpenCV); only the network runs on ``device``, in fp32, so that a GPU gives the
        CPU's masks up to a pixel at the threshold (tested)."""
        with torch.inference_mode():
            features_on = torch.from_numpy(features)[None].to(self.device, non_blocking=True)
            probability = torch.sigmoid(self.model(features_on))[0]
        return probability.cpu().numpy()

    def __call__(self, flows: FlowPairs, t: int) -> PairMotion | None:
        evidence = frame_evidence(flows, t, self.params)
        if evidence is None:
            return None
        moving = self.probability(evidence.features) > self.threshold
        return PairMotion(
            moving,
            evidence.residual,
            evidence.confident,
            evidence.relative_flow,
            evidence.camera_fitted,
            evidence.lands,
        )
