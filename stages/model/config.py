"""The model's hyper-parameters, one settings section saved resolved into every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from stages.errors import UserError
from stages.model import dinov2
from stages.model.decoder import LAYERS as DECODER_LAYOUTS
from stages.model.encoder import input_multiple
from stages.settings import (
    FLAG,
    SIZE_OR_NONE,
    TEXT,
    Setting,
    SettingError,
    Settings,
    choice,
    floats,
    ints,
)

ENCODERS = ("resnet18", *dinov2.VARIANTS)
TOKEN_NORMS = ("token", "map")
SLOT_INITS = ("standard", "shared")
#: what the network sees and reconstructs: RGB frames (DIOD), or LiDAR range maps (x, y, z, r)
#: on the camera's image grid (DIOD-3D, SPEC-xMOD.md section 2)
MODALITIES = ("rgb", "lidar")
CHANNELS = {"rgb": 3, "lidar": 4}


@dataclass(frozen=True)
class ModelConfig(Settings):
    """Defaults are the paper's KITTI/TRI-PD architecture (paper 4.3, docs/model.md).

    The architecture does not depend on the input resolution: any input whose sides are
    multiples of ``input_multiple`` (4; 28 with DINOv2's 14-pixel patches) runs through the
    same weights (maps come out at 1/4 of the input).
    """

    modality: str = Setting(
        "rgb",
        choice(*MODALITIES),
        "What the network sees and reconstructs: RGB frames (DIOD), or the LiDAR sweep "
        "projected on the image grid as normalised (x, y, z, r) maps (DIOD-3D: 4 input and "
        "output channels, trained on the same 2D motion masks, with scene completion).",
    ).field()
    lidar_fill: float = Setting(
        0.0,
        floats(0),
        "LiDAR models: each empty input pixel takes the values of its nearest point when that "
        "point lies within this many mean point spacings (1 / sqrt(the share of pixels with a "
        "point): the same at any resolution); farther pixels (sky) stay empty; the completion "
        "target stays the sparse projection. 0: the sparse projection, as the authors feed it.",
    ).field()
    num_slots: int = Setting(45, ints(2), "K, slots including the last, background one.").field()
    slot_dim: int = Setting(64, ints(1), "D, the slot width.").field()
    encoder: str = Setting(
        "resnet18",
        choice(*ENCODERS),
        "Frame encoder: ResNet-18 trained from scratch (DIOD), or a frozen DINOv2 ViT/14 "
        "(DIOD*: input sides multiples of 28).",
    ).field()
    encoder_weights: str = Setting(
        dinov2.NO_WEIGHTS,
        TEXT,
        "DINOv2 weights file (PATH|none): the official facebookresearch dinov2_vit?14_pretrain.pth "
        "or a timm .safetensors/.pth; none: random, for tests and smoke runs only.",
    ).field()
    encoder_sha256: str = Setting(
        "",
        TEXT,
        "sha256 of encoder_weights, recorded when the run is resolved and checked whenever "
        "the file is read again.",
        cli=False,
    ).field()
    encoder_width: float = Setting(
        1.0,
        floats(0, 4, low_open=True),
        "Channel multiplier of the ResNet (1.0: 64..512 channels, the paper's).",
    ).field()
    gru_hidden: int = Setting(64, ints(1), "Channels of the ConvGRU's hidden state.").field()
    gru_layers: int = Setting(2, ints(1), "ConvGRU layers.").field()
    mlp_hidden: int = Setting(128, ints(1), "Hidden width of the slot update MLP.").field()
    decoder_channels: int = Setting(
        64, ints(1), "Channels of the spatial broadcast decoder."
    ).field()
    decoder_layers: str = Setting(
        "4",
        choice(*DECODER_LAYOUTS),
        "Transposed convolutions of the decoder: 4 (5x5/2, 5x5/2, 5x5/1, 3x3/1; 30 % fewer "
        "decoder FLOPs than 6), 4h (5x5/2, 5x5/1, 5x5/2, 3x3/1: the 5x5/1 at half "
        "resolution) or the authors' 6 (4x4/2, 5x5/1, 5x5/1, 4x4/2, 5x5/1, 3x3/1).",
    ).field()
    token_norm: str = Setting(
        "token",
        choice(*TOKEN_NORMS),
        "LayerNorm of the tokens: per token over its channels (the model runs at any "
        "resolution), or the authors' over the whole map, [h*w, D] (a learned per-position "
        "affine: 3.7 M parameters at KITTI size, and the model runs at its training size only).",
    ).field()
    map_size: tuple[int, int] | None = Setting(
        None,
        SIZE_OR_NONE,
        "h x w of the maps the 'map' token norm is built for: the input size / 4, set from it.",
        cli=False,
    ).field()
    slot_init: str = Setting(
        "standard",
        choice(*SLOT_INITS),
        "The fixed initial slots: every entry N(0, 1), or the authors' per-dimension "
        "N(mu_d, sigma_d) shared by all slots, mu_d ~ N(0, 1), sigma_d = |N(0, 1)|.",
    ).field()
    qkv_bias: bool = Setting(
        False, FLAG, "Biases in the slot-attention q, k, v projections (the authors': on)."
    ).field()
    iters_per_frame: int = Setting(
        1, ints(1), "Slot-attention iterations on each frame (the reference: 1)."
    ).field()
    warmup_iters: int = Setting(
        1, ints(0), "Extra slot-attention iterations on a clip's first frame (the reference: 1)."
    ).field()
    slot_seed: int = Setting(0, ints(), "Seed of the fixed random initial slots.").field()
    eps: float = Setting(1e-8, floats(0, low_open=True), "Attention epsilon.", cli=False).field()

    @property
    def background_slot(self) -> int:
        return self.num_slots - 1

    @property
    def channels(self) -> int:
        """Input (and reconstruction) channels: 3 for RGB, 4 for (x, y, z, r) range maps."""
        return CHANNELS[self.modality]

    @property
    def input_multiple(self) -> int:
        """What the input sides must be multiples of, for this encoder."""
        return input_multiple(self.encoder)

    def check(self) -> None:
        if self.modality == "lidar" and dinov2.is_dinov2(self.encoder):
            raise SettingError(
                "encoder",
                f" {self.encoder}: DINOv2 was trained on RGB images; a LiDAR model trains its "
                "ResNet-18 from scratch (--encoder resnet18)",
            )
        if (self.token_norm == "map") != (self.map_size is not None):
            raise SettingError(
                "map_size",
                f" {self.map_size}: the 'map' token norm needs the map size and only it uses one",
            )
        if not dinov2.is_dinov2(self.encoder) and self.encoder_weights != dinov2.NO_WEIGHTS:
            raise SettingError(
                "encoder_weights",
                f" {self.encoder_weights}: only for a DINOv2 encoder ({self.encoder} trains "
                "from scratch)",
            )

    def pinned(self) -> ModelConfig:
        """This config with its weights file named absolutely and its sha256 recorded (or
        checked, if recorded already): what a run saves, so that resuming, distilling and
        exporting read the same weights. A missing or changed file is a SettingError."""
        if not dinov2.is_dinov2(self.encoder):
            return self
        path, digest = dinov2.pin(self.encoder, self.encoder_weights, self.encoder_sha256)
        return replace(self, encoder_weights=path, encoder_sha256=digest)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"model config: unknown key(s) {', '.join(unknown)}")
        return cls(**data)
