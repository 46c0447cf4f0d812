"""Features -> tokens: positional embedding, LayerNorm, MLP (paper 4.3, docs/model.md).

The grid (y, x, 1-y, 1-x) is rebuilt for whatever map size comes in. The LayerNorm is either
per token over its channels (``map_size`` None: nothing is tied to one resolution) or, as
the authors', over the whole [h*w, C] map: its affine weights are per position, a learned
positional prior that fixes the map size in the checkpoint.
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
    def __init__(self, channels: int, dim: int, map_size: tuple[int, int] | None = None):
        super().__init__()
        self.map_size = map_size
        self.position = nn.Linear(4, channels)
        shape = [channels] if map_size is None else [map_size[0] * map_size[1], channels]
        self.norm = nn.LayerNorm(shape)
        self.mlp = nn.Sequential(
            nn.Linear(channels, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> tokens (N, h*w, D), row-major over the map."""
        h, w = features.shape[-2:]
        if self.map_size is not None and (h, w) != tuple(self.map_size):
            raise ValueError(
                f"maps {h}x{w}: this model's token norm was built for "
                f"{self.map_size[0]}x{self.map_size[1]} maps (its training input size)"
            )
        grid = position_grid(h, w, features.device, self.position.weight.dtype)
        tokens = features.flatten(2).transpose(1, 2) + self.position(grid).flatten(0, 1)
        return self.mlp(self.norm(tokens))
