"""The segmenter's training settings, declared once (stages.settings); free of heavy imports
so the CLI can show them without loading torch."""

from __future__ import annotations

from dataclasses import dataclass

from stages.settings import SIZE, Setting, Settings, floats, ints


@dataclass(frozen=True)
class SegmenterTraining(Settings):
    """``diod segmenter``: how the network is trained (stages.masks.learned.training)."""

    steps: int = Setting(10000, ints(1), "Optimiser steps.").field()
    batch_size: int = Setting(8, ints(1), "Crops per step.").field()
    crop: tuple[int, int] = Setting(
        (96, 160),
        SIZE,
        "Training crop HxW, px (a smaller frame is taken whole).",
    ).field()
    lr: float = Setting(2e-3, floats(0, low_open=True), "Peak learning rate (AdamW).").field()
    weight_decay: float = Setting(1e-4, floats(0), "AdamW weight decay.", cli=False).field()
    warmup: int = Setting(100, ints(0), "Linear warm-up steps.", cli=False).field()
    dice_weight: float = Setting(
        1.0, floats(0), "Weight of the soft Dice term beside cross-entropy.", cli=False
    ).field()
    checkpoint_every: int = Setting(
        250, ints(1), "Steps between resumable checkpoints.", cli=False
    ).field()
    seed: int = Setting(0, ints(), "Seed of initialisation and crop sampling.").field()
