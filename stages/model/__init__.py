"""The DIOD video model (SPEC section 2): encoder -> ConvGRU -> slot attention -> decoder."""

from stages.model.config import ModelConfig
from stages.model.diod import DIOD, DIODOutput, fg_map

__all__ = ["DIOD", "DIODOutput", "ModelConfig", "fg_map"]
