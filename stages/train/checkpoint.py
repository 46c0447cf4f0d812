"""Checkpoints of a training artifact: ``<artifact>/checkpoints/step_<8 digits>.pt``.

Each holds the model, the objective's extra modules (e.g. the distillation teacher), the
optimizer, the schedule, the gradient scaler, the step, every RNG state and the resolved
config; it is written through the artifact's staging area and renamed into place, so a
kill never leaves half a file under its final name. The newest one resumes a run; the one
of a complete artifact (its last step) is what export and distillation load.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stages.artifacts import Artifact, ArtifactStore
from stages.errors import UserError
from stages.model import DIOD, ModelConfig
from stages.model.pair import is_pair_config

DIRECTORY = "checkpoints"
#: the stages whose artifacts hold trained networks, latest in the chain first
MODEL_STAGES = ("xmod", "distill", "burnin")
PATTERN = re.compile(r"step_(\d{8})\.pt$")


def relpath(step: int) -> str:
    return f"{DIRECTORY}/step_{step:08d}.pt"


def checkpoints(artifact_path: Path) -> list[tuple[int, Path]]:
    """(step, path) of every published checkpoint, oldest first."""
    folder = artifact_path / DIRECTORY
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := PATTERN.match(p.name))]
    return sorted(found)


def latest(artifact_path: Path) -> tuple[int, Path] | None:
    found = checkpoints(artifact_path)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise UserError(f"{path}: unreadable checkpoint ({exc})") from None


def final(artifact: Artifact) -> dict[str, Any]:
    """The last checkpoint of a complete training artifact."""
    found = latest(artifact.path)
    if found is None:
        raise UserError(
            f"{artifact.stage} artifact {artifact.id} has no checkpoint in {artifact.path / DIRECTORY}"
        )
    return load(found[1])


def model_from(state: dict[str, Any], which: str = "model", modality: str = "rgb") -> DIOD:
    """A DIOD built from a checkpoint's model config, with the weights of ``which``:
    ``model`` (the trained network; the student in distillation) or an extra module name
    (e.g. ``teacher``). An xMOD checkpoint holds a pair of networks: ``modality`` picks
    one (other checkpoints hold one network and ignore it)."""
    config = state["model_config"]
    if which == "model":
        weights = state["model"]
    elif which in state.get("extra", {}):
        weights = state["extra"][which]
    else:
        have = ", ".join(["model", *state.get("extra", {})])
        raise UserError(f"checkpoint has no '{which}' weights (it has: {have})")
    if is_pair_config(config):
        config, prefix = config[modality], f"{modality}."
        weights = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    model = DIOD(ModelConfig.from_dict(config))
    model.load_state_dict(weights)
    return model


def find_trained(
    store: ArtifactStore, ref: str, dataset: str | None = None, option: str = "--model"
) -> Artifact:
    """A complete burn-in or distill artifact of ``dataset`` (None: of any dataset in the
    workspace): ``ref`` = ``burnin`` or ``distill`` (the newest complete one) or an id prefix
    naming exactly one. Errors name ``option``."""
    where = f"dataset '{dataset}'" if dataset else str(store.workspace)
    complete = [a for stage in MODEL_STAGES for a in store.list(dataset, stage) if a.is_complete]
    if ref in MODEL_STAGES:
        found = [a for a in complete if a.stage == ref]
        if not found:
            raise UserError(f"{option} {ref}: no complete {ref} artifact in {where}")
        return max(found, key=lambda a: (a.manifest.get("finished", ""), a.id))
    found = [a for a in complete if a.id.startswith(ref)]
    if not found:
        raise UserError(
            f"{option} {ref}: no complete burnin, distill or xmod artifact with this id in {where}"
        )
    if len(found) > 1:
        raise UserError(f"{option} {ref}: ambiguous prefix ({', '.join(str(a) for a in found)})")
    return found[0]
