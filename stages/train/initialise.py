"""``diod train --init``: start a run from the weights of another trained model.

The source is a model file (``diod export-model``), a training checkpoint file, or a
complete burn-in/distill artifact of any dataset in the workspace (its teacher for a
distillation, as export). Every tensor whose name and shape match is copied; the others
keep the new network's fresh initialisation and are listed, as the authors' KITTI recipe
does when it starts from their TRI-PD model (the map token norm and anything sized by the
input differ there). A decoder of another layout (``decoder_layers``) is not loaded: the
layouts' transposed convolutions can share names and shapes in another order (``4`` and
``4h``), where name and shape alone would load them into the wrong places. The source's
identity (artifact path, or file path and sha256) is part of the run's artifact id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stages.artifacts import ArtifactStore, file_sha256
from stages.errors import UserError
from stages.model import DIOD, ModelConfig
from stages.train import checkpoint

#: the format tag of a model file; ``stages.modelfile`` (which imports training's checkpoint
#: reader, so training cannot import it) writes files with this tag
MODEL_FILE_FORMAT = "diod-model"


@dataclass(frozen=True)
class InitSource:
    """Weights to start from, what identifies them, and the layout of their decoder."""

    weights: dict[str, torch.Tensor]
    identity: dict[str, str]
    decoder_layers: str


def _network(state: dict[str, Any]) -> str:
    """The network of a training checkpoint to start from: its teacher (what export uses)
    if it has one, else its model."""
    return "teacher" if "teacher" in state.get("extra", {}) else "model"


def _weights(state: dict[str, Any], network: str) -> dict[str, torch.Tensor]:
    return state["model"] if network == "model" else state["extra"][network]


@dataclass(frozen=True)
class TrainedFile:
    """A trained network read from a file: its weights, and the configuration of the run
    that trained it (a model file's: its network and input geometry only)."""

    weights: dict[str, torch.Tensor]
    record: dict[str, Any]


def read_trained_file(path: Path, option: str) -> TrainedFile:
    """The network of a model file, or of a training checkpoint (its teacher if it has one,
    else its model); a file that is neither is one UserError naming ``option``."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{option} {path}: unreadable ({reason[:120]})") from None
    if isinstance(content, dict) and content.get("format") == MODEL_FILE_FORMAT:
        geometry = content["input"]
        data = {k: geometry[k] for k in ("crop_top", "clip_length")}
        record = {
            "model": content["model_config"],
            "data": {"input_size": geometry["size"], **data},
        }
        return TrainedFile(content["weights"], record)
    if isinstance(content, dict) and isinstance(content.get("model"), dict):
        return TrainedFile(_weights(content, _network(content)), content.get("config", {}))
    raise UserError(
        f"{option} {path}: expected a diod model file (diod export-model) or a diod training "
        "checkpoint (a dict with 'model' weights)"
    )


def init_source(store: ArtifactStore, ref: str) -> InitSource:
    """The weights ``ref`` names: a file path, else an artifact (see the module)."""
    path = Path(ref)
    if path.suffix or path.exists():
        if not path.is_file():
            raise UserError(f"--init {path}: file not found")
        trained = read_trained_file(path, "--init")
        return InitSource(
            trained.weights,
            {"file": str(path.resolve()), "sha256": file_sha256(path)},
            ModelConfig.from_dict(trained.record.get("model", {})).decoder_layers,
        )
    artifact = checkpoint.find_trained(store, ref, option="--init")
    state = checkpoint.final(artifact)
    network = _network(state)
    return InitSource(
        _weights(state, network),
        {"artifact": f"{artifact.dataset}/{artifact.stage}/{artifact.id}", "network": network},
        ModelConfig.from_dict(state["model_config"]).decoder_layers,
    )


def load_matching(
    model: DIOD, weights: dict[str, torch.Tensor], decoder_layers: str
) -> dict[str, Any]:
    """Copy into ``model`` every tensor of ``weights`` with its name and shape, the decoder's
    only from a decoder of ``model``'s layout (``decoder_layers``: the source's); returns the
    counts and the names left at their fresh initialisation."""
    own = model.state_dict()
    same_decoder = decoder_layers == model.config.decoder_layers
    fits = {
        k: v
        for k, v in weights.items()
        if k in own
        and tuple(v.shape) == tuple(own[k].shape)
        and (same_decoder or not k.startswith("decoder."))
    }
    if not fits:
        raise UserError("--init: no tensor of the source fits this network (another model?)")
    model.load_state_dict({**own, **fits})
    return {
        "loaded": len(fits),
        "tensors": len(own),
        "reinitialised": sorted(set(own) - set(fits)),
        "unused": sorted(set(weights) - set(fits)),
    }
