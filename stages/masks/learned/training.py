"""Training the segmenter on examples (``examples.video_examples``): random crops with
mirror augmentation, binary cross-entropy plus soft Dice over the pixels that have a target,
AdamW with a cosine schedule. Deterministic for a seed on one CPU, across kills and
resumes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stages.masks.learned.examples import IGNORE, Example
from stages.masks.learned.features import CHANNELS
from stages.masks.learned.network import MotionSegmenter
from stages.masks.learned.params import SegmenterTraining

#: channels that flip sign under a left-right mirror: horizontal flow components, the
#: signed distance across the epipolar line, and x
MIRRORED_SIGN = tuple(
    CHANNELS.index(c) for c in ("relative_u", "flow_u", "parallax_across", "previous_u", "x")
)


def sample_batch(
    examples: Sequence[Example], rng: np.random.Generator, batch: int, crop: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random crops (of at most ``crop``; the whole frame when it is smaller),
    half of them mirrored. Frames of different sizes are cropped to the smallest common
    size within the batch."""
    picks = rng.integers(len(examples), size=batch)
    ch = min(crop[0], *(examples[i][1].shape[0] for i in picks))
    cw = min(crop[1], *(examples[i][1].shape[1] for i in picks))
    features = np.empty((batch, len(CHANNELS), ch, cw), np.float32)
    targets = np.empty((batch, ch, cw), np.uint8)
    for b, i in enumerate(picks):
        feats, target = examples[i]
        y = rng.integers(target.shape[0] - ch + 1)
        x = rng.integers(target.shape[1] - cw + 1)
        features[b] = feats[:, y : y + ch, x : x + cw]
        targets[b] = target[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            features[b] = features[b, :, :, ::-1]
            targets[b] = targets[b, :, ::-1]
            features[b, list(MIRRORED_SIGN)] *= -1
    return torch.from_numpy(features), torch.from_numpy(targets)


def segmentation_loss(
    logits: torch.Tensor, targets: torch.Tensor, dice_weight: float
) -> torch.Tensor:
    """Binary cross-entropy + ``dice_weight`` x soft Dice, both over pixels with a target
    (not ``IGNORE``). Dice keeps the rare mover pixels (a few % of a frame) from being
    drowned by the background."""
    valid = (targets != IGNORE).float()
    truth = (targets == 1).float()
    bce = F.binary_cross_entropy_with_logits(logits, truth, weight=valid, reduction="sum")
    bce = bce / valid.sum().clamp_min(1.0)
    prob = torch.sigmoid(logits) * valid
    dice = 1 - (2 * (prob * truth).sum() + 1) / (prob.sum() + truth.sum() + 1)
    return bce + dice_weight * dice


def learning_rate(step: int, config: SegmenterTraining) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    """The network, its optimiser and the crop sampler's state: everything a resumed run
    needs to continue exactly where a killed one stopped (``state_dict``)."""

    def __init__(self, config: SegmenterTraining, model: MotionSegmenter | None = None):
        torch.manual_seed(config.seed)
        self.config = config
        self.model = model if model is not None else MotionSegmenter()
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.rng = np.random.default_rng(config.seed)
        self.step = 0
        self.losses: list[float] = []

    def train_step(self, examples: Sequence[Example]) -> float:
        """One optimiser step on a fresh batch of crops; returns the loss."""
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, config)
        features, targets = sample_batch(examples, self.rng, config.batch_size, config.crop)
        self.model.train()
        loss = segmentation_loss(self.model(features), targets, config.dice_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        self.losses.append(float(loss.detach()))
        return self.losses[-1]

    def run(
        self,
        examples: Sequence[Example],
        until: int | None = None,
        on_step: Callable[[Trainer], None] | None = None,
    ) -> MotionSegmenter:
        """Steps up to ``until`` (default: all of ``config.steps``); the model in eval mode."""
        for _ in range(self.step, min(until or self.config.steps, self.config.steps)):
            self.train_step(examples)
            if on_step is not None:
                on_step(self)
        return self.model.eval()

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "step": self.step,
            "losses": self.losses,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self.step = state["step"]
        self.losses = list(state["losses"])
