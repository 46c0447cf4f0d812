"""Self-contained model files: one trained network, everything needed to run it, and where
it came from, in one file that ``torch.load(weights_only=True)`` reads (plain tensors and
containers only: loading a file from someone else runs no code).

A file holds: the format name and version, the weights of one network (a burn-in's model,
or a distillation's teacher or student), its ``ModelConfig``, the input geometry the network
was trained at (input size, the fraction of the frame cropped at the top, the clip length T,
and the normalisation: RGB / 255), and a lineage summary (dataset, stage, artifact ids up
the chain, steps, the last validation scores). Frozen weights are stored once: the file
holds the one network it names, never the training state. A frozen DINOv2 encoder's
weights (DIOD*), which checkpoints leave in their weights file, are copied in once under
``frozen_encoder``, so that the file runs without that weights file (``diod predict`` needs
no ``--encoder-weights``); the model config still names the file and its sha256.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stages.artifacts import Artifact, atomic_torch_save
from stages.errors import UserError
from stages.model import DIOD, ModelConfig
from stages.settings import flatten
from stages.train import checkpoint
from stages.train.initialise import MODEL_FILE_FORMAT

FORMAT = MODEL_FILE_FORMAT
VERSION = 1
#: what the input values are, by modality: RGB in [0, 1] (uint8 / 255, no mean/std), or
#: LiDAR (x, y, z, r) scaled by stages.lidar.projection.normalise's fixed ranges
NORMALISATION = {"rgb": "rgb/255", "lidar": "xyzr/fixed-ranges"}
NETWORKS = ("teacher", "student")


@dataclass(frozen=True)
class InputGeometry:
    """How frames must be prepared for the network."""

    size: tuple[int, int]  # (H, W) it trained at
    crop_top: float  # fraction of the frame height left out at the top
    clip_length: int  # T of its training clips


@dataclass
class LoadedModel:
    model: DIOD
    geometry: InputGeometry
    network: str  # "model" (burn-in), "teacher" or "student"
    lineage: dict[str, Any]


def network_of(artifact: Artifact, which: str) -> str:
    """The checkpoint entry of the network to use: a distillation's (or xMOD's) teacher
    (the EMA of the student, the steadier one) or its student (``model``); a burn-in's one
    network. An offline distillation has no teacher: its student is the only network that
    trained."""
    if which not in NETWORKS:
        raise UserError(f"--which {which}: expected one of {', '.join(NETWORKS)}")
    if artifact.stage not in ("distill", "xmod"):
        return "model"
    return "teacher" if which == "teacher" else "model"


def from_artifact(artifact: Artifact, which: str = "teacher", modality: str = "rgb") -> LoadedModel:
    """The network of a complete burn-in, distill or xmod artifact, as a model file would
    hold it; ``modality`` picks one of an xmod artifact's two networks."""
    state = checkpoint.final(artifact)
    key = network_of(artifact, which)
    trained = flatten(state["config"])  # nested by section (older checkpoints: flat)
    summary = artifact.manifest.get("summary", {})
    lineage = {
        "dataset": artifact.dataset,
        "stage": artifact.stage,
        "artifact": artifact.id,
        "upstream": dict(artifact.upstream),
        "steps": int(state["step"]),
        "validation": summary.get("validation"),
    }
    return LoadedModel(
        model=checkpoint.model_from(state, key, modality),
        geometry=InputGeometry(
            size=tuple(trained["input_size"]),
            crop_top=float(trained.get("crop_top", 0.0)),
            clip_length=int(trained["clip_length"]),
        ),
        network="student" if artifact.stage != "burnin" and key == "model" else key,
        lineage=lineage,
    )


def save(loaded: LoadedModel, path: Path) -> Path:
    """Write ``loaded`` to ``path`` atomically (a temporary file renamed into place)."""
    content = {
        "format": FORMAT,
        "version": VERSION,
        "network": loaded.network,
        "model_config": loaded.model.config.to_dict(),
        "input": {
            "size": list(loaded.geometry.size),
            "crop_top": loaded.geometry.crop_top,
            "clip_length": loaded.geometry.clip_length,
            "normalisation": NORMALISATION[loaded.model.config.modality],
        },
        "lineage": _plain(loaded.lineage),
        "weights": {k: v.detach().cpu().clone() for k, v in loaded.model.state_dict().items()},
    }
    frozen = getattr(loaded.model.encoder, "frozen_state_dict", None)
    if frozen is not None:
        content["frozen_encoder"] = {k: v.cpu().clone() for k, v in frozen().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(content, path)
    return path


def load(path: Path) -> LoadedModel:
    """A model file's network, checked: a missing, truncated or foreign file is one
    UserError naming the file."""
    if not path.is_file():
        raise UserError(f"{path}: model file not found")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: not a readable diod model file ({reason[:120]})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise UserError(f"{path}: not a diod model file (no '{FORMAT}' format tag)")
    if content.get("version") != VERSION:
        raise UserError(
            f"{path}: diod model file version {content.get('version')}, this diod reads "
            f"version {VERSION}"
        )
    try:  # a frozen encoder comes with the file (older or hand-made files: its weights file)
        model = DIOD(ModelConfig.from_dict(content["model_config"]), content.get("frozen_encoder"))
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    if content["input"].get("normalisation") != NORMALISATION[model.config.modality]:
        raise UserError(f"{path}: unknown input normalisation {content['input']!r}")
    try:
        model.load_state_dict(content["weights"])
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit its model config ({exc})") from None
    geometry = content["input"]
    return LoadedModel(
        model=model,
        geometry=InputGeometry(
            size=tuple(geometry["size"]),
            crop_top=float(geometry["crop_top"]),
            clip_length=int(geometry["clip_length"]),
        ),
        network=content["network"],
        lineage=content["lineage"],
    )


def _plain(value: Any) -> Any:
    """Containers of str/int/float/bool/None only (what weights_only loading accepts)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
