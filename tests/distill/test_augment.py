"""The student's strong view: torchvision-equivalent colour ops, per clip, no geometry."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from stages.distill.augment import (
    StrongAugConfig,
    apply_strong,
    sample_strong_params,
    strong_view,
)
from stages.errors import UserError

CONFIG = StrongAugConfig()


def clips(b: int = 6, t: int = 3, h: int = 12, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def torchvision_view(clip: torch.Tensor, params, b: int) -> torch.Tensor:
    """One clip through torchvision's functional ops, in the drawn order."""
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    out = clip
    if params.jitter[b]:
        for op in params.order[b].tolist():
            out = ops[op](out, float(params.factors[b, op]))
    if params.grayscale[b]:
        out = TF.rgb_to_grayscale(out, num_output_channels=3)
    if params.solarize[b]:
        out = TF.solarize(out, CONFIG.solarize_threshold)
    return out


@pytest.mark.parametrize("force", ["none", "jitter", "all"])
def test_matches_torchvision_per_clip(force):
    x = clips(b=8)
    params = sample_strong_params(8, torch.Generator().manual_seed(3), CONFIG)
    if force != "none":
        params.jitter[:] = True
    if force == "all":
        params.grayscale[::2] = True
        params.solarize[1::2] = True
    out = apply_strong(x, params, CONFIG)
    for b in range(8):
        torch.testing.assert_close(out[b], torchvision_view(x[b], params, b), atol=2e-6, rtol=0)


def test_deterministic_given_the_generator():
    x = clips()
    a = strong_view(x, torch.Generator().manual_seed(7))
    b = strong_view(x, torch.Generator().manual_seed(7))
    c = strong_view(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_shape_range_and_input_untouched():
    x = clips()
    before = x.clone()
    out = strong_view(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(x, before)


def test_same_transform_on_every_frame_of_a_clip():
    x = clips(t=1).expand(-1, 4, -1, -1, -1).contiguous()
    for seed in range(5):
        out = strong_view(x, torch.Generator().manual_seed(seed))
        assert torch.equal(out, out[:, :1].expand_as(out))


def test_geometry_is_unchanged():
    """Colour ops commute with any rearrangement of pixels: a crop/flip (the weak view)
    applied before or after the strong view gives the same clip, so maps stay aligned."""
    x = clips(b=8)
    params = sample_strong_params(8, torch.Generator().manual_seed(1), CONFIG)
    params.jitter[:] = True
    params.grayscale[:4] = True
    params.solarize[::2] = True
    permutation = torch.randperm(12 * 16, generator=torch.Generator().manual_seed(2))

    def shuffle(v: torch.Tensor) -> torch.Tensor:
        return v.flatten(-2)[..., permutation].view_as(v)

    torch.testing.assert_close(
        apply_strong(shuffle(x), params, CONFIG), shuffle(apply_strong(x, params, CONFIG))
    )
    torch.testing.assert_close(
        apply_strong(x.flip(-1), params, CONFIG), apply_strong(x, params, CONFIG).flip(-1)
    )


def test_parameter_distribution():
    params = sample_strong_params(20000, torch.Generator().manual_seed(0), CONFIG)
    assert params.jitter.float().mean() == pytest.approx(0.8, abs=0.015)
    assert params.grayscale.float().mean() == pytest.approx(0.2, abs=0.015)
    assert params.solarize.float().mean() == pytest.approx(0.2, abs=0.015)
    for column, (low, high) in enumerate([(0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1)]):
        values = params.factors[:, column]
        assert values.min() >= low and values.max() <= high
        assert values.mean() == pytest.approx((low + high) / 2, abs=0.01)
    assert torch.equal(params.order.sort(dim=1).values, torch.arange(4).expand(20000, 4))


def test_draw_count_does_not_depend_on_outcomes():
    """The generator advances the same whatever is applied, so a resumed run stays in step."""
    never = StrongAugConfig(p_jitter=0.0, p_grayscale=0.0, p_solarize=0.0)
    always = StrongAugConfig(p_jitter=1.0, p_grayscale=1.0, p_solarize=1.0)
    states = []
    for config in (never, always):
        generator = torch.Generator().manual_seed(5)
        sample_strong_params(4, generator, config)
        states.append(generator.get_state())
    assert torch.equal(states[0], states[1])


def test_nothing_applied_is_identity():
    never = StrongAugConfig(p_jitter=0.0, p_grayscale=0.0, p_solarize=0.0)
    x = clips()
    assert torch.equal(strong_view(x, torch.Generator().manual_seed(0), never), x)


@pytest.mark.parametrize(
    "kwargs", [{"hue": 0.6}, {"brightness": -0.1}, {"p_grayscale": 1.5}, {"p_jitter": -0.1}]
)
def test_bad_config_is_a_user_error(kwargs):
    with pytest.raises(UserError):
        StrongAugConfig(**kwargs)
