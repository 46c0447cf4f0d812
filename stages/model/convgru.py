"""Convolutional GRU over the frames of a clip (paper 4.3, docs/model.md: 2 layers, hidden 64, 3x3).

The gate convolutions act on [x_t, h_{t-1}]; a convolution of a concatenation is the sum of
one convolution per part, so the input part (the expensive one, 512 channels at full width)
is computed for all frames of the clip in one batched call and only the small hidden part
runs frame by frame. The result is the ordinary ConvGRU.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvGRULayer(nn.Module):
    def __init__(self, c_in: int, hidden: int, kernel: int = 3):
        super().__init__()
        pad = kernel // 2
        self.hidden = hidden
        # reset gate r, update gate z and candidate n from the input, all at once
        self.input_conv = nn.Conv2d(c_in, 3 * hidden, kernel, padding=pad)
        self.hidden_gates = nn.Conv2d(hidden, 2 * hidden, kernel, padding=pad, bias=False)
        self.hidden_candidate = nn.Conv2d(hidden, hidden, kernel, padding=pad, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, h, w) -> hidden states (B, T, hidden, h, w); zero state at t = 0."""
        b, t = x.shape[:2]
        from_input = self.input_conv(x.flatten(0, 1)).unflatten(0, (b, t))
        state = x.new_zeros(b, self.hidden, *x.shape[-2:])
        outputs = []
        for i in range(t):
            xr, xz, xn = from_input[:, i].chunk(3, dim=1)
            hr, hz = self.hidden_gates(state).chunk(2, dim=1)
            reset = torch.sigmoid(xr + hr)
            update = torch.sigmoid(xz + hz)
            candidate = torch.tanh(xn + self.hidden_candidate(reset * state))
            state = (1 - update) * state + update * candidate
            outputs.append(state)
        return torch.stack(outputs, dim=1)


class ConvGRU(nn.Module):
    """Stacked ConvGRU layers; ReLU on the top layer's outputs."""

    def __init__(self, c_in: int, hidden: int, layers: int, kernel: int = 3):
        super().__init__()
        self.layers = nn.ModuleList(
            ConvGRULayer(c_in if i == 0 else hidden, hidden, kernel) for i in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return torch.relu(x)
