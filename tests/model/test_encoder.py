"""The ResNet-18 encoder's strided 1x1 shortcut: the function and gradients of a strided
convolution, and the narrow encoder's backward pass in channels_last (which crashed the
process on an AVX-512 EPYC with oneDNN's own strided 1x1 kernel)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stages.model.encoder import PointwiseStridedConv2d, ResNet18Encoder


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(7, 9), (8, 10)])
def test_pointwise_strided_equals_the_strided_convolution(channels_last, size):
    torch.manual_seed(0)
    conv = PointwiseStridedConv2d(8, 16, 1, stride=2, bias=True).double()
    x = torch.randn(3, 8, *size, dtype=torch.double)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    weight = conv.weight.detach().clone().requires_grad_(True)
    bias = conv.bias.detach().clone().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    got, ref = conv(x), F.conv2d(x_ref, weight, bias, stride=2)
    torch.testing.assert_close(got, ref)
    grad = torch.randn_like(ref)
    got.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(conv.weight.grad, weight.grad)
    torch.testing.assert_close(conv.bias.grad, bias.grad)


def test_narrow_encoder_trains_in_channels_last():
    torch.manual_seed(0)
    encoder = ResNet18Encoder(0.125).to(memory_format=torch.channels_last)
    shortcuts = [m for m in encoder.modules() if isinstance(m, PointwiseStridedConv2d)]
    assert len(shortcuts) == 1 and shortcuts[0].in_channels == 8  # layer 2's projection
    x = torch.rand(16, 3, 96, 320).contiguous(memory_format=torch.channels_last)
    features = encoder(x)
    assert features.shape == (16, 64, 24, 80)
    features.mean().backward()
    assert all(p.grad is not None for p in encoder.parameters())
