"""The student's strong view (paper section 3.3.1, paper 3.3, docs/distillation.md).

The student sees a photometrically perturbed copy of the teacher's clip: colour jitter
(brightness, contrast, saturation 0.4, hue 0.1, in a random order, p 0.8), grayscale (p 0.2)
and solarize at 0.5 (p 0.2), the operations and order of torchvision's ColorJitter,
RandomGrayscale and RandomSolarize. Only colours change, never geometry, so the teacher's
pseudo-labels (computed on the weak view) stay aligned with the student's maps pixel for
pixel. Parameters are drawn per clip, shared by its frames (an object must not change colour
within a clip), from a ``torch.Generator`` (reproducible, and resumable from its state).

The batch is processed with one tensor op per (position in the jitter order, operation):
each op runs once on the sub-batch of clips that use it at that position, so the cost does
not grow with the batch's Python length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stages.errors import UserError

# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class StrongAugConfig:
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    p_jitter: float = 0.8
    p_grayscale: float = 0.2
    solarize_threshold: float = 0.5
    p_solarize: float = 0.2

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise UserError(f"strong view {name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise UserError(f"strong view hue must be in [0, 0.5], got {self.hue}")
        for name in ("p_jitter", "p_grayscale", "p_solarize", "solarize_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"strong view {name} must be in [0, 1], got {getattr(self, name)}")


@dataclass
class StrongAugParams:
    """Per-clip parameters (CPU tensors, B clips).

    ``factors`` (B, 4): brightness, contrast and saturation factors and the hue shift, in
    the op order of ``order`` (B, 4), a permutation of 0..3 per clip; ``jitter``,
    ``grayscale``, ``solarize`` (B,) bool: which clips get each transform.
    """

    jitter: torch.Tensor
    factors: torch.Tensor
    order: torch.Tensor
    grayscale: torch.Tensor
    solarize: torch.Tensor


def sample_strong_params(
    clips: int, generator: torch.Generator, config: StrongAugConfig
) -> StrongAugParams:
    """Draw every clip's parameters; always the same number of draws, whatever is applied."""

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(clips, generator=generator, dtype=torch.float64)

    jitter = torch.rand(clips, generator=generator) < config.p_jitter
    factors = torch.stack(
        [
            uniform(max(0.0, 1 - config.brightness), 1 + config.brightness),
            uniform(max(0.0, 1 - config.contrast), 1 + config.contrast),
            uniform(max(0.0, 1 - config.saturation), 1 + config.saturation),
            uniform(-config.hue, config.hue),
        ],
        dim=1,
    ).float()
    order = torch.argsort(torch.rand(clips, 4, generator=generator), dim=1)
    grayscale = torch.rand(clips, generator=generator) < config.p_grayscale
    solarize = torch.rand(clips, generator=generator) < config.p_solarize
    return StrongAugParams(jitter, factors, order, grayscale, solarize)


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The generator of the strong views at optimizer ``step`` on DDP ``rank``: a function of
    the three only, so a resumed run draws the views it would have drawn."""
    state = np.random.SeedSequence((seed, step, rank)).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> 1))


def strong_view(
    frames: torch.Tensor, generator: torch.Generator, config: StrongAugConfig | None = None
) -> torch.Tensor:
    """Strong view of ``frames`` (B, T, 3, H, W) in [0, 1]; the input is left untouched."""
    config = config or StrongAugConfig()
    return apply_strong(frames, sample_strong_params(frames.shape[0], generator, config), config)


def apply_strong(
    frames: torch.Tensor, params: StrongAugParams, config: StrongAugConfig
) -> torch.Tensor:
    """Apply drawn parameters to ``frames`` (B, T, 3, H, W) in [0, 1]; returns a new tensor."""
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ValueError(f"expected clips (B, T, 3, H, W), got {tuple(frames.shape)}")
    out = frames.clone()
    factors = params.factors.to(frames.device, frames.dtype)
    for position in range(4):
        for op, adjust in enumerate(_JITTER_OPS):
            rows = _rows(params.jitter & (params.order[:, position] == op), out.device)
            if rows is not None:
                out[rows] = adjust(out[rows], factors[rows, op])
    rows = _rows(params.grayscale, out.device)
    if rows is not None:
        out[rows] = _grayscale(out[rows]).expand(-1, -1, 3, -1, -1)
    rows = _rows(params.solarize, out.device)
    if rows is not None:
        clips = out[rows]
        out[rows] = torch.where(clips >= config.solarize_threshold, 1.0 - clips, clips)
    return out


def _rows(chosen: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """Indices of the chosen clips on ``device``, None when there are none.

    ``chosen`` lives on the CPU, so finding the rows never waits for the device.
    """
    rows = chosen.nonzero().squeeze(1)
    return rows.to(device, non_blocking=True) if rows.numel() else None


def _per_clip(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1, 1)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(dim=2)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(2)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = _per_clip(factor)
    return (factor * x + (1.0 - factor) * other).clamp(0.0, 1.0)


def _brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (x * _per_clip(factor)).clamp(0.0, 1.0)


def _contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # The grey level to contrast against is each frame's mean luma, as torchvision per image.
    return _blend(x, _grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), factor)


def _saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, _grayscale(x), factor)


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``shift`` turns per clip, keeping HSV value and saturation.

    The HSV round trip of torchvision's adjust_hue, in closed form: with hue in sixths h,
    chroma c and value v, channel n (5 for red, 3 green, 1 blue) is
    v - c * clamp(min(k, 4 - k), 0, 1), k = (n + h) mod 6.
    """
    r, g, b = x.unbind(dim=2)
    value = x.amax(dim=2)
    chroma = value - x.amin(dim=2)
    is_r = value == r
    is_g = (value == g) & ~is_r
    offset = torch.where(is_r, g - b, torch.where(is_g, b - r, r - g))
    offset = offset / torch.where(chroma == 0, 1.0, chroma)
    sector = torch.where(is_r, 0.0, torch.where(is_g, 2.0, 4.0))
    hue = (offset + sector + 6.0 * shift.view(-1, 1, 1, 1)).unsqueeze(2)
    channel = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 1, 3, 1, 1)
    k = torch.remainder(channel + hue, 6.0)
    return value.unsqueeze(2) - chroma.unsqueeze(2) * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


_JITTER_OPS = (_brightness, _contrast, _saturation, _hue)
