"""xMOD's two networks as one module (SPEC-xMOD.md section 3): a DIOD on RGB frames and a
DIOD-3D on LiDAR range maps of the same clips, trained side by side by one optimiser.

One module, because training treats it as one model: one optimiser over both, one state
dict (``rgb.*``, ``lidar.*``) in each checkpoint, one EMA teacher of the pair, and one
DistributedDataParallel wrapper, whose gradient hooks fire only for modules called
through its own forward. That forward therefore takes both inputs at once: the clip's
RGB frames and range maps stacked on the channel axis (B, T, 3 + 4, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stages.model.config import ModelConfig
from stages.model.diod import DIOD, DIODOutput

MODALITIES = ("rgb", "lidar")


@dataclass(frozen=True)
class PairConfig:
    """The two networks' configurations, saved with the pair."""

    rgb: ModelConfig
    lidar: ModelConfig

    def __post_init__(self) -> None:
        for name in MODALITIES:
            if getattr(self, name).modality != name:
                raise ValueError(
                    f"the pair's {name} network is a {getattr(self, name).modality} one"
                )

    @property
    def channels(self) -> int:
        """The stacked input's channels: RGB, then the range map's."""
        return self.rgb.channels + self.lidar.channels

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).to_dict() for name in MODALITIES}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairConfig:
        return cls(**{name: ModelConfig.from_dict(data[name]) for name in MODALITIES})


@dataclass
class PairOutput:
    """Each network's output; ``masks`` and ``recon`` are both networks' side by side (slots,
    then channels), what timing a forward and backward pass needs."""

    rgb: DIODOutput
    lidar: DIODOutput

    @property
    def masks(self) -> torch.Tensor:
        return torch.cat([self.rgb.masks, self.lidar.masks], dim=2)

    @property
    def recon(self) -> torch.Tensor | None:
        if self.rgb.recon is None:
            return None
        return torch.cat([self.rgb.recon, self.lidar.recon], dim=2)


def is_pair_config(config: dict[str, Any]) -> bool:
    """Whether a saved model configuration is a pair's (``PairConfig.to_dict``)."""
    return set(config) == set(MODALITIES)


class CrossModalPair(nn.Module):
    def __init__(self, rgb: DIOD, lidar: DIOD):
        super().__init__()
        self.config = PairConfig(rgb.config, lidar.config)
        self.rgb, self.lidar = rgb, lidar

    def use_channels_last(self) -> CrossModalPair:
        self.rgb.use_channels_last()
        self.lidar.use_channels_last()
        return self

    def network(self, modality: str) -> DIOD:
        return self.rgb if modality == "rgb" else self.lidar

    def forward(self, inputs: torch.Tensor, reconstruct: bool = True) -> PairOutput:
        """``inputs`` (B, T, 7, H, W): RGB frames in [0, 1], then the normalised range maps."""
        split = self.config.rgb.channels
        return PairOutput(
            self.rgb(inputs[:, :, :split], reconstruct=reconstruct),
            self.lidar(inputs[:, :, split:], reconstruct=reconstruct),
        )
