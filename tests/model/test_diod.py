"""The DIOD model: shapes, attention-map properties, the parts against their definitions,
and every shipped preset/config smoke-tested at a tiny input on CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stages.errors import UserError
from stages.model import DIOD, ModelConfig, fg_map
from stages.model.convgru import ConvGRULayer
from stages.model.encoder import ResNet18Encoder
from stages.model.positional import Tokenizer
from stages.model.slot_attention import SlotAttention

TINY = ModelConfig(num_slots=5, encoder_width=0.125, decoder_channels=8)


def test_output_shapes_and_maps_are_a_partition_of_unity():
    torch.manual_seed(0)
    model = DIOD(TINY)
    out = model(torch.rand(2, 3, 3, 32, 48))
    assert out.masks.shape == (2, 3, 5, 8, 12)
    assert out.recon.shape == (2, 3, 3, 32, 48)
    assert out.slots.shape == (2, 3, 5, 64)
    assert torch.allclose(out.masks.sum(2), torch.ones(2, 3, 8, 12), atol=1e-5)
    assert (out.masks >= 0).all()
    assert torch.allclose(fg_map(out.masks), 1 - out.masks[:, :, -1])


def test_masks_alone_skip_the_decoder_and_match():
    torch.manual_seed(0)
    model = DIOD(TINY).eval()
    frames = torch.rand(1, 2, 3, 32, 48)
    with torch.no_grad():
        full, masks_only = model(frames), model(frames, reconstruct=False)
    assert masks_only.recon is None
    assert torch.equal(full.masks, masks_only.masks) and torch.equal(full.slots, masks_only.slots)


def test_same_weights_run_at_any_resolution_multiple_of_four():
    model = DIOD(TINY).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 2, 3, 16, 16)).masks.shape[-2:] == (4, 4)
        assert model(torch.rand(1, 2, 3, 40, 72)).masks.shape[-2:] == (10, 18)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.rand(1, 1, 3, 18, 16))


def test_encoder_is_resnet18_at_quarter_resolution_without_maxpool():
    enc = ResNet18Encoder(1.0)
    assert not any(isinstance(m, nn.MaxPool2d) for m in enc.modules())
    assert [len(layer) for layer in enc.layers] == [2, 2, 2, 2]
    assert enc.out_channels == 512
    assert enc(torch.rand(1, 3, 32, 64)).shape == (1, 512, 8, 16)
    # torchvision's resnet18 has 11.69M parameters, 11.18M without its fc layer; stride
    # changes do not change parameter counts
    n = sum(p.numel() for p in enc.parameters())
    assert n == 11_176_512
    assert ResNet18Encoder(0.25).out_channels == 128


def test_convgru_layer_equals_a_gru_on_the_concatenation():
    """The split input/hidden convolutions are the textbook ConvGRU on [x, h]."""
    torch.manual_seed(0)
    layer = ConvGRULayer(3, 4)
    x = torch.rand(2, 3, 3, 5, 6)
    gates = nn.Conv2d(7, 8, 3, padding=1)
    cand = nn.Conv2d(7, 4, 3, padding=1)
    wx_r, wx_z, wx_n = layer.input_conv.weight.chunk(3)
    bx_r, bx_z, bx_n = layer.input_conv.bias.chunk(3)
    wh_r, wh_z = layer.hidden_gates.weight.chunk(2)
    with torch.no_grad():
        gates.weight.copy_(torch.cat([torch.cat([wx_r, wh_r], 1), torch.cat([wx_z, wh_z], 1)]))
        gates.bias.copy_(torch.cat([bx_r, bx_z]))
        cand.weight.copy_(torch.cat([wx_n, layer.hidden_candidate.weight], 1))
        cand.bias.copy_(bx_n)
        h = torch.zeros(2, 4, 5, 6)
        expected = []
        for t in range(3):
            r, z = torch.sigmoid(gates(torch.cat([x[:, t], h], 1))).chunk(2, 1)
            n = torch.tanh(cand(torch.cat([x[:, t], r * h], 1)))
            h = (1 - z) * h + z * n
            expected.append(h)
        assert torch.allclose(layer(x), torch.stack(expected, 1), atol=1e-6)


def test_tokens_do_not_depend_on_other_tokens_statistics():
    """Per-token LayerNorm: a token's value is independent of the rest of the map."""
    torch.manual_seed(0)
    tok = Tokenizer(8, 16)
    feats = torch.rand(1, 8, 3, 4)
    other = feats.clone()
    other[..., 2:, :] = 10 * torch.rand(1, 8, 1, 4)
    a, b = tok(feats), tok(other)
    assert torch.allclose(a[:, :8], b[:, :8], atol=1e-6)


def test_slot_attention_softmax_is_over_slots_and_update_reads_weighted_mean():
    torch.manual_seed(0)
    sa = SlotAttention(8, 16, eps=1e-8)
    keys, values = sa.keys_values(torch.rand(2, 10, 8))
    slots = torch.randn(2, 3, 8)
    new, attn = sa(keys, values, slots)
    assert attn.shape == (2, 10, 3)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 10), atol=1e-6)
    assert new.shape == slots.shape
    # the update only sees the weighted mean: duplicating every token changes nothing
    new2, _ = sa(keys.repeat(1, 2, 1), values.repeat(1, 2, 1), slots)
    assert torch.allclose(new, new2, atol=1e-5)


def test_slots_are_carried_over_time_and_initial_slots_are_fixed():
    torch.manual_seed(0)
    model = DIOD(TINY).eval()
    a = DIOD(TINY)
    assert torch.equal(model.initial_slots, a.initial_slots)  # seeded, not learned
    assert "initial_slots" not in dict(model.named_parameters())
    assert not torch.equal(
        model.initial_slots, DIOD(ModelConfig(**{**TINY.to_dict(), "slot_seed": 1})).initial_slots
    )
    frames = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        whole = model(frames)
        first = model(frames[:, :1])
        changed = frames.clone()
        changed[:, 0] = torch.rand(3, 16, 16)
        later = model(changed)
    # frame 0 alone gives the same maps as within the clip (causal in time)
    assert torch.allclose(whole.masks[:, 0], first.masks[:, 0], atol=1e-5)
    # changing frame 0 changes frame 2's maps: ConvGRU state and slots carry over
    assert not torch.allclose(whole.masks[:, 2], later.masks[:, 2], atol=1e-4)


def test_warmup_and_iterations_are_configurable():
    torch.manual_seed(0)
    frames = torch.rand(1, 2, 3, 16, 16)
    outs = []
    for warmup, iters in ((0, 1), (1, 1), (1, 3)):
        torch.manual_seed(0)
        model = DIOD(
            ModelConfig(**{**TINY.to_dict(), "warmup_iters": warmup, "iters_per_frame": iters})
        ).eval()
        with torch.no_grad():
            outs.append(model(frames).masks)
    assert not torch.allclose(outs[0], outs[1])
    assert not torch.allclose(outs[1], outs[2])


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    model = DIOD(TINY).eval()
    frames = torch.rand(1, 2, 3, 16, 32)
    with torch.no_grad():
        ref = model(frames)
        model.use_channels_last()
        got = model(frames)
    assert torch.allclose(ref.masks, got.masks, atol=1e-5)
    assert torch.allclose(ref.recon, got.recon, atol=1e-5)


def test_config_validation_and_round_trip():
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY
    assert TINY.background_slot == 4
    with pytest.raises(UserError, match="num_slots"):
        ModelConfig(num_slots=1)
    with pytest.raises(UserError, match="unknown key"):
        ModelConfig.from_dict({"slots": 3})
