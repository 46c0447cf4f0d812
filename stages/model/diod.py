"""The assembled DIOD video model (paper 4.3, docs/model.md), the same for student and teacher.

    inputs (B, T, C, H, W) --normalise--> ResNet-18 (per frame, 1/4 resolution)
      --> ConvGRU over time --> tokens (+ position, LayerNorm, MLP)
      --> slot attention frame by frame, slots carried from t to t+1
      --> attention maps W (the segmentation) and slots --> decoder --> reconstruction

Everything that does not depend on the previous frame (encoder, the ConvGRU's input
convolution, token projections, decoder) runs batched over all B*T frames; only the
recurrences (ConvGRU state, slot updates) loop over the T frames.

The inputs are RGB frames in [0, 1] (C = 3, centred by ImageNet statistics) or, for
DIOD-3D (``modality = "lidar"``), LiDAR range maps (C = 4: x, y, z, r normalised into
(0, 1) by the projection, 0 where no point fell), fed as they are, as the authors do: their
zeros are the "no point" the network must learn to see. The decoder reconstructs the
same C channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from stages.model.config import ModelConfig
from stages.model.convgru import ConvGRU
from stages.model.decoder import SlotDecoder
from stages.model.encoder import ResNet18Encoder, make_encoder
from stages.model.positional import Tokenizer
from stages.model.slot_attention import SlotAttention

# The encoder is trained from scratch, but ImageNet statistics are the usual centring of RGB;
# range maps come normalised from the projection (stages.lidar.projection.normalise).
INPUT_STATISTICS = {
    "rgb": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "lidar": ((0.0, 0.0, 0.0, 0.0), (1.0, 1.0, 1.0, 1.0)),
}


@dataclass
class DIODOutput:
    """masks: (B, T, K, h, w) attention maps, sum to 1 over K, last slot = background;
    recon: (B, T, C, H, W) reconstruction in the input's space (RGB in [0, 1], or the dense
    normalised LiDAR map);
    slots: (B, T, K, D) slots after the update on frame t."""

    masks: torch.Tensor
    recon: torch.Tensor | None
    slots: torch.Tensor


def fg_map(masks: torch.Tensor) -> torch.Tensor:
    """W_fg = 1 - W_bg: (B, T, K, h, w) -> (B, T, h, w)."""
    return 1 - masks[:, :, -1]


def initial_slots(config: ModelConfig) -> torch.Tensor:
    """The fixed initial slots (K, D), drawn once from ``slot_seed`` and never learned (as the
    reference); saved in the state dict. ``standard``: every entry N(0, 1); ``shared`` (the
    authors'): slot k, dimension d ~ N(mu_d, sigma_d), mu_d ~ N(0, 1), sigma_d = |N(0, 1)|."""
    generator = torch.Generator().manual_seed(config.slot_seed)
    shape = (config.num_slots, config.slot_dim)
    if config.slot_init == "standard":
        return torch.randn(*shape, generator=generator)
    mu = torch.randn(config.slot_dim, generator=generator)
    sigma = torch.randn(config.slot_dim, generator=generator).abs()
    return mu + sigma * torch.randn(*shape, generator=generator)


class DIOD(nn.Module):
    def __init__(
        self, config: ModelConfig, frozen_encoder: Mapping[str, torch.Tensor] | None = None
    ):
        """``frozen_encoder``: a DINOv2 encoder's weights, when a model file holds them."""
        super().__init__()
        self.config = config
        self.encoder = make_encoder(config, frozen_encoder)
        self.temporal = ConvGRU(self.encoder.out_channels, config.gru_hidden, config.gru_layers)
        self.tokenizer = Tokenizer(config.gru_hidden, config.slot_dim, config.map_size)
        self.slot_attention = SlotAttention(
            config.slot_dim, config.mlp_hidden, config.eps, config.qkv_bias
        )
        self.decoder = SlotDecoder(
            config.slot_dim, config.decoder_channels, config.decoder_layers, config.channels
        )
        self.register_buffer("initial_slots", initial_slots(config))
        mean, std = (torch.tensor(s).view(1, -1, 1, 1) for s in INPUT_STATISTICS[config.modality])
        self.register_buffer("input_mean", mean, persistent=False)
        self.register_buffer("input_std", std, persistent=False)
        self.channels_last = False

    @property
    def stride(self) -> int:
        """Input pixels per map cell (4 whatever the encoder: the decoder upsamples x4)."""
        return ResNet18Encoder.STRIDE

    def use_channels_last(self) -> DIOD:
        """Convolutions in NHWC (faster with oneDNN on CPU and tensor cores on GPU)."""
        self.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def forward(self, frames: torch.Tensor, reconstruct: bool = True) -> DIODOutput:
        """``reconstruct=False`` skips the decoder (a full-resolution pass) where only the
        masks are wanted."""
        b, t, channels, height, width = frames.shape
        if channels != self.config.channels:
            raise ValueError(
                f"input has {channels} channels; this {self.config.modality} model takes "
                f"{self.config.channels}"
            )
        multiple = self.config.input_multiple
        if height % multiple or width % multiple:
            raise ValueError(
                f"input size {height}x{width}: both sides must be multiples of {multiple}"
            )
        x = (frames.flatten(0, 1) - self.input_mean) / self.input_std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features = self.encoder(x)
        h, w = features.shape[-2:]
        features = self.temporal(features.unflatten(0, (b, t)))
        keys, values = self.slot_attention.keys_values(self.tokenizer(features.flatten(0, 1)))
        keys, values = keys.unflatten(0, (b, t)), values.unflatten(0, (b, t))

        slots = self.initial_slots.to(values.dtype).expand(b, -1, -1)
        for _ in range(self.config.warmup_iters):
            slots, _ = self.slot_attention(keys[:, 0], values[:, 0], slots)
        maps, states = [], []
        for i in range(t):
            for _ in range(self.config.iters_per_frame):
                slots, attn = self.slot_attention(keys[:, i], values[:, i], slots)
            maps.append(attn)
            states.append(slots)
        attn = torch.stack(maps, dim=1)  # (B, T, N, K)
        slots = torch.stack(states, dim=1)  # (B, T, K, D)

        masks = attn.transpose(2, 3).unflatten(3, (h, w))
        if not reconstruct:
            return DIODOutput(masks=masks, recon=None, slots=slots)
        canvas = SlotDecoder.canvas(attn.flatten(0, 1), slots.flatten(0, 1), h, w)
        if self.channels_last:
            canvas = canvas.contiguous(memory_format=torch.channels_last)
        recon = self.decoder(canvas) * self.input_std + self.input_mean
        return DIODOutput(masks=masks, recon=recon.unflatten(0, (b, t)), slots=slots)
