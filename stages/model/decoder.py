"""Slots back to pixels (paper 4.3, docs/model.md, as in BMOD / Bao et al.).

Each map cell receives the sum of the slot vectors weighted by their attention there (one
D-channel canvas per frame, so the cost does not grow with K); transposed convolutions
upsample it x4 to the input resolution and predict RGB.
"""

from __future__ import annotations

import torch
from torch import nn


class SlotDecoder(nn.Module):
    """Four transposed convolutions: 5x5/2, 5x5/2 (x4 in all), 5x5/1, then 3x3/1 to RGB."""

    def __init__(self, dim: int, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(dim, channels, 5, stride=2, padding=2, output_padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(channels, channels, 5, stride=2, padding=2, output_padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(channels, channels, 5, stride=1, padding=2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(channels, 3, 3, stride=1, padding=1),
        )

    @staticmethod
    def canvas(attn: torch.Tensor, slots: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """sum_k W_k * s_k: attn (N, hw, K), slots (N, K, D) -> (N, D, h, w)."""
        mixed = torch.einsum("nqk,nkd->ndq", attn.to(slots.dtype), slots)
        return mixed.unflatten(2, (h, w))

    def forward(self, canvas: torch.Tensor) -> torch.Tensor:
        return self.net(canvas)
