"""The slot decoder: every layout upsamples the maps x4 exactly, and where its layers run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stages.model.decoder import LAYERS, SlotDecoder


@pytest.mark.parametrize("layout", sorted(LAYERS))
@pytest.mark.parametrize("size", [(24, 80), (5, 7)])
def test_every_layout_returns_the_input_resolution(layout, size):
    decoder = SlotDecoder(dim=16, channels=8, layers=layout, out_channels=4)
    out = decoder(torch.rand(2, 16, *size))
    assert out.shape == (2, 4, size[0] * 4, size[1] * 4)


def _input_sizes(layout: str) -> list[tuple[int, int, int]]:
    """(kernel, input height, input width) of each transposed convolution on a 24x80 map."""
    decoder = SlotDecoder(dim=16, channels=8, layers=layout)
    seen: list[tuple[int, int, int]] = []
    for module in decoder.net:
        if isinstance(module, nn.ConvTranspose2d):
            module.register_forward_hook(
                lambda m, args, out: seen.append((m.kernel_size[0], *args[0].shape[-2:]))
            )
    decoder(torch.rand(1, 16, 24, 80))
    return seen


def test_4h_runs_the_5x5_stride_1_layer_at_half_resolution():
    # the same kernels as "4"; only the wide stride-1 layer moves to a quarter of the pixels
    assert sorted(LAYERS["4h"]) == sorted(LAYERS["4"])
    assert _input_sizes("4") == [(5, 24, 80), (5, 48, 160), (5, 96, 320), (3, 96, 320)]
    assert _input_sizes("4h") == [(5, 24, 80), (5, 48, 160), (5, 48, 160), (3, 96, 320)]
