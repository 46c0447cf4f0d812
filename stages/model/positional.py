"""Features -> tokens: positional embedding, per-token LayerNorm, MLP (paper 4.3, docs/model.md).

The grid (y, x, 1-y, 1-x) is rebuilt for whatever map size comes in, and the LayerNorm
normalises each token over its channels, so nothing here is tied to one resolution (the
reference normalises over [h*w, 64], which fixes the map size in the checkpoint).
"""

from __future__ import annotations

import torch
from torch import nn


def position_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(h, w, 4): (y, x, 1-y, 1-x), each coordinate in [0, 1]."""
    ys = torch.linspace(0.0, 1.0, h, device=device, dtype=dtype)
    xs = torch.linspace(0.0, 1.0, w, device=device, dtype=dtype)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([y, x, 1 - y, 1 - x], dim=-1)


class Tokenizer(nn.Module):
    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.position = nn.Linear(4, channels)
        self.norm = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(
            nn.Linear(channels, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> tokens (N, h*w, D), row-major over the map."""
        h, w = features.shape[-2:]
        grid = position_grid(h, w, features.device, self.position.weight.dtype)
        tokens = features.flatten(2).transpose(1, 2) + self.position(grid).flatten(0, 1)
        return self.mlp(self.norm(tokens))
