"""The DIOD video model (paper 4.3, docs/model.md): encoder -> ConvGRU -> slot attention -> decoder."""

from stages.model.config import ModelConfig
from stages.model.diod import DIOD, DIODOutput, fg_map

__all__ = ["DIOD", "DIODOutput", "ModelConfig", "fg_map"]
