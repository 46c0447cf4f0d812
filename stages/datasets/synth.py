"""The built-in synthetic dataset: the folder layout plus what only a generator knows.

Each video directory also holds ``meta.json`` (which instance ids move in the world) and
``flow.npz`` (ground-truth forward flow, key ``forward``, (T-1, 2, H, W) float32, channels
dx, dy in pixels), written by ``stages.synthgen``.
"""

from __future__ import annotations

import json

import numpy as np

from stages.datasets.base import Video
from stages.datasets.folder import FolderDataset
from stages.errors import UserError


class SynthDataset(FolderDataset):
    name = "synth"

    def meta(self, video: Video) -> dict:
        path = video.extra["dir"] / "meta.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(
                f"{path}: missing (not a synth dataset? use --dataset folder)"
            ) from None
        except ValueError as exc:
            raise UserError(f"{path}: unreadable JSON ({exc})") from None

    def moving_ids(self, video: Video) -> set[int]:
        return {int(i) for i in self.meta(video)["moving_ids"]}

    def gt_flow(self, video: Video) -> np.ndarray:
        path = video.extra["dir"] / "flow.npz"
        try:
            with np.load(path) as data:
                return data["forward"].astype(np.float32)
        except FileNotFoundError:
            raise UserError(f"{path}: missing ground-truth flow") from None
