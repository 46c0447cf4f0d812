"""Slots back to pixels (paper 4.3, docs/model.md, as in BMOD / Bao et al.).

Each map cell receives the sum of the slot vectors weighted by their attention there (one
D-channel canvas per frame, so the cost does not grow with K); transposed convolutions
upsample it x4 to the input resolution and predict the input's channels (RGB, or a dense
LiDAR (x, y, z, r) map: DIOD-3D's scene completion).
"""

from __future__ import annotations

import torch
from torch import nn

# (kernel, stride) of each transposed convolution, the last one to the output channels; all
# upsample x4. "4h" is "4" with its 5x5 stride-1 layer moved before the second upsampling:
# the same depth and kernels, that layer at a quarter of the pixels (at 96x320 on an AVX2 CPU
# the two full-resolution layers of "4" were about half of a synth-cpu training step).
LAYERS: dict[str, tuple[tuple[int, int], ...]] = {
    "4": ((5, 2), (5, 2), (5, 1), (3, 1)),
    "4h": ((5, 2), (5, 1), (5, 2), (3, 1)),
    "6": ((4, 2), (5, 1), (5, 1), (4, 2), (5, 1), (3, 1)),  # the authors'
}


def _upconv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.ConvTranspose2d:
    """A transposed convolution that multiplies the map size by ``stride`` exactly."""
    padding = (kernel - stride + 1) // 2
    output_padding = stride - kernel + 2 * padding
    return nn.ConvTranspose2d(
        c_in, c_out, kernel, stride=stride, padding=padding, output_padding=output_padding
    )


class SlotDecoder(nn.Module):
    """Transposed convolutions (``LAYERS[layers]``) with ReLUs between them."""

    def __init__(self, dim: int, channels: int, layers: str = "4", out_channels: int = 3):
        super().__init__()
        spec = LAYERS[layers]
        modules: list[nn.Module] = []
        c_in = dim
        for i, (kernel, stride) in enumerate(spec):
            last = i == len(spec) - 1
            modules.append(_upconv(c_in, out_channels if last else channels, kernel, stride))
            if not last:
                modules.append(nn.ReLU(inplace=True))
            c_in = channels
        self.net = nn.Sequential(*modules)

    @staticmethod
    def canvas(attn: torch.Tensor, slots: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """sum_k W_k * s_k: attn (N, hw, K), slots (N, K, D) -> (N, D, h, w)."""
        mixed = torch.einsum("nqk,nkd->ndq", attn.to(slots.dtype), slots)
        return mixed.unflatten(2, (h, w))

    def forward(self, canvas: torch.Tensor) -> torch.Tensor:
        return self.net(canvas)
