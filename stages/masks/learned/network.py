"""The segmenter network: a small U-Net over ``features.CHANNELS`` -> one logit per pixel
(the pixel belongs to an object that moves in the world).

Why a U-Net: the evidence of a slow mover is weak per pixel (DIS flow error is about the
residual of a car keeping its distance ahead) but coherent over the object, and whether a
flow is the camera's depends on where the object stands (its ground contact row) and on the
flow around it: coarse levels see that context, skip connections keep the object's outline.
The constructor is the configuration (every width declared once here); it is saved with the
weights so a model file rebuilds itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stages.masks.learned.features import CHANNELS


def _block(in_channels: int, out_channels: int, groups: int) -> nn.Sequential:
    """Two 3x3 convolutions, each with group normalisation (batch-independent: crops in
    training, whole frames at inference) and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.GroupNorm(groups, out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.GroupNorm(groups, out_channels),
        nn.ReLU(inplace=True),
    )


class MotionSegmenter(nn.Module):
    """U-Net: ``len(widths)`` levels, each halving the resolution of the one above."""

    def __init__(
        self,
        in_channels: int = len(CHANNELS),
        widths: tuple[int, ...] = (8, 16, 32, 48, 64),
        groups: int = 8,
    ):
        super().__init__()
        self.config = {"in_channels": in_channels, "widths": list(widths), "groups": groups}
        self.down = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.down.append(_block(previous, width, groups))
            previous = width
        self.up = nn.ModuleList(
            _block(widths[i + 1] + widths[i], widths[i], groups) for i in range(len(widths) - 1)
        )
        self.head = nn.Conv2d(widths[0], 1, 1)

    @property
    def stride(self) -> int:
        """Input sizes are padded to a multiple of this."""
        return 2 ** (len(self.down) - 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) features -> (B, H, W) logits, any H and W."""
        h, w = features.shape[-2:]
        s = self.stride
        pad_h, pad_w = -h % s, -w % s
        x = F.pad(features, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else features
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([x, skips[i]], dim=1))
        return self.head(x)[:, 0, :h, :w]
