"""The model's hyper-parameters, one dataclass saved resolved into every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from stages.errors import UserError

ENCODERS = ("resnet18",)


@dataclass(frozen=True)
class ModelConfig:
    """Defaults are the paper's KITTI/TRI-PD architecture (SPEC section 2).

    The architecture does not depend on the input resolution: any input whose sides are
    multiples of 4 runs through the same weights (maps come out at 1/4 of the input).
    """

    num_slots: int = 45  # K, the last one is the background slot
    slot_dim: int = 64  # D
    encoder: str = "resnet18"
    encoder_width: float = 1.0  # channel multiplier of the ResNet (1.0 = 64..512 channels)
    gru_hidden: int = 64
    gru_layers: int = 2
    mlp_hidden: int = 128  # hidden width of the slot update MLP
    decoder_channels: int = 64
    iters_per_frame: int = 1  # slot-attention iterations on each frame (ref: 1)
    warmup_iters: int = 1  # extra iterations on frame 0 before its own (ref: 1)
    slot_seed: int = 0  # seed of the fixed random initial slots
    eps: float = 1e-8

    def __post_init__(self) -> None:
        checks = [
            (self.num_slots >= 2, "num_slots must be >= 2 (foreground slots + 1 background slot)"),
            (self.slot_dim >= 1 and self.gru_hidden >= 1, "slot_dim and gru_hidden must be >= 1"),
            (self.encoder in ENCODERS, f"encoder must be one of {', '.join(ENCODERS)}"),
            (0 < self.encoder_width <= 4, "encoder_width must be in (0, 4]"),
            (self.gru_layers >= 1, "gru_layers must be >= 1"),
            (self.iters_per_frame >= 1, "iters_per_frame must be >= 1"),
            (self.warmup_iters >= 0, "warmup_iters must be >= 0"),
            (self.decoder_channels >= 1 and self.mlp_hidden >= 1, "widths must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"model config: {message}")

    @property
    def background_slot(self) -> int:
        return self.num_slots - 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"model config: unknown key(s) {', '.join(unknown)}")
        return cls(**data)
