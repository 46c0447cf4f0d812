"""The segmenter's model file: the network's constructor arguments and weights, the feature
channels and camera-fit settings it was trained on, and its decision threshold, so that a
file alone rebuilds the exact motion source (``diod masks --segmenter FILE``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stages.errors import UserError
from stages.masks.learned.features import CHANNELS
from stages.masks.learned.network import MotionSegmenter
from stages.masks.params import MotionParams

FORMAT = "diod-segmenter"
VERSION = 1
#: moving where the probability exceeds this
THRESHOLD = 0.5
#: ``--segmenter builtin``: the model `make segmenter` trains, shipped with the package
BUILTIN_FILE = Path(__file__).parent / "models" / "segmenter.pt"


@dataclass
class Segmenter:
    model: MotionSegmenter
    #: the camera-fit settings its features were computed with in training
    motion: MotionParams
    threshold: float
    #: where it came from: training settings, data, artifact id
    provenance: dict[str, Any]


def segmenter_state(segmenter: Segmenter) -> dict[str, Any]:
    """What ``torch.save`` writes."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "channels": list(CHANNELS),
        "config": segmenter.model.config,
        "state": segmenter.model.state_dict(),
        "motion": dataclasses.asdict(segmenter.motion),
        "threshold": segmenter.threshold,
        "provenance": segmenter.provenance,
    }


def load_segmenter(path: Path | str, option: str = "--segmenter") -> Segmenter:
    """A model file -> ``Segmenter``; one error line for anything else."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{option} {path}: file not found") from None
    except Exception as exc:  # torch raises many kinds for a file that is not its own
        raise UserError(f"{option} {path}: not a readable model file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{option} {path}: not a segmenter model file (made by diod segmenter)")
    if data.get("version") != VERSION or data.get("channels") != list(CHANNELS):
        raise UserError(
            f"{option} {path}: made for other input features (format version "
            f"{data.get('version')}); train a new one with diod segmenter"
        )
    model = MotionSegmenter(**data["config"])
    model.load_state_dict(data["state"])
    return Segmenter(
        model.eval(), MotionParams(**data["motion"]), float(data["threshold"]), data["provenance"]
    )
