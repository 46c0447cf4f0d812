"""ResNet-18 trained from scratch, kept at 1/4 resolution (paper 4.3, docs/model.md, as the reference).

Two changes to the ImageNet ResNet-18 keep spatial detail for small objects: no max-pool
after the stem, and stride 1 in layer3/layer4. The stem (stride 2) and layer2 (stride 2)
give the 1/4 feature grid the slots attend over. ``width`` scales every stage's channels
so CPU presets can train the same topology at a fraction of the cost.

``make_encoder`` builds the encoder a ``ModelConfig`` names: this one, or the frozen DINOv2
of DIOD* (``stages.model.dinov2``); both give features at 1/4 of the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from stages.model.dinov2 import FrozenDINOv2, is_dinov2

if TYPE_CHECKING:
    from stages.model.config import ModelConfig


class PointwiseStridedConv2d(nn.Conv2d):
    """A 1x1 convolution with a stride, computed as the 1x1 convolution of every
    ``stride``-th pixel: the same function, gradients and weights. oneDNN's own strided 1x1
    kernel crashes the process in its backward pass (double free, segfault) with AVX-512 on
    an AMD EPYC (Zen 4), channels_last, 8 input channels (torch 2.14.1): the projection
    shortcut of the narrow synth-cpu encoder."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = self.stride
        return F.conv2d(x[:, :, :: step[0], :: step[1]], self.weight, self.bias)


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int) -> list[nn.Module]:
    conv = PointwiseStridedConv2d if kernel == 1 and stride > 1 else nn.Conv2d
    return [
        conv(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    ]


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(c_in, c_out, 3, stride), nn.ReLU(inplace=True), *_conv_bn(c_out, c_out, 3, 1)
        )
        needs_projection = stride != 1 or c_in != c_out
        self.shortcut = (
            nn.Sequential(*_conv_bn(c_in, c_out, 1, stride)) if needs_projection else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet18Encoder(nn.Module):
    """BasicBlock [2, 2, 2, 2]; strides stem 2, layer1 1, layer2 2, layer3 1, layer4 1."""

    LAYER_STRIDES = (1, 2, 1, 1)
    STRIDE = 4  # input pixels per feature cell
    INPUT_MULTIPLE = STRIDE  # input sides it takes

    def __init__(self, width: float, in_channels: int = 3):
        """``in_channels``: 3 for RGB, 4 for LiDAR (x, y, z, r) maps."""
        super().__init__()
        channels = [max(8, round(c * width)) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(*_conv_bn(in_channels, channels[0], 7, 2), nn.ReLU(inplace=True))
        layers, c_in = [], channels[0]
        for c_out, stride in zip(channels, self.LAYER_STRIDES, strict=True):
            layers.append(
                nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1))
            )
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.out_channels = channels[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) normalised inputs -> (N, C, H/4, W/4) features."""
        return self.layers(self.stem(x))


def input_multiple(encoder: str) -> int:
    """What the input sides of ``encoder`` must be multiples of (declared by its class)."""
    return FrozenDINOv2.INPUT_MULTIPLE if is_dinov2(encoder) else ResNet18Encoder.INPUT_MULTIPLE


def make_encoder(
    config: ModelConfig, frozen: Mapping[str, torch.Tensor] | None = None
) -> ResNet18Encoder | FrozenDINOv2:
    """The encoder ``config`` names; ``frozen``: a DINOv2 encoder's weights given directly
    (a model file holds them) instead of read from ``config.encoder_weights``."""
    if is_dinov2(config.encoder):
        return FrozenDINOv2.build(
            config.encoder, config.encoder_weights, config.encoder_sha256, frozen
        )
    return ResNet18Encoder(config.encoder_width, config.channels)
