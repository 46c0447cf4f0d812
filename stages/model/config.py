"""The model's hyper-parameters, one settings section saved resolved into every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from stages.errors import UserError
from stages.model import dinov2
from stages.model.encoder import input_multiple
from stages.settings import TEXT, Setting, SettingError, Settings, choice, floats, ints

ENCODERS = ("resnet18", *dinov2.VARIANTS)


@dataclass(frozen=True)
class ModelConfig(Settings):
    """Defaults are the paper's KITTI/TRI-PD architecture (paper 4.3, docs/model.md).

    The architecture does not depend on the input resolution: any input whose sides are
    multiples of ``input_multiple`` (4; 28 with DINOv2's 14-pixel patches) runs through the
    same weights (maps come out at 1/4 of the input).
    """

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
    def input_multiple(self) -> int:
        """What the input sides must be multiples of, for this encoder."""
        return input_multiple(self.encoder)

    def check(self) -> None:
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
