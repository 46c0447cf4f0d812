"""Training: data, losses (paper 3.2, docs/training.md), schedule, the generic loop, its runner and the
objectives (burn-in, distillation, xMOD's cross-modal distillation). ``train`` runs one ``diod train`` request, whatever its stage."""

from __future__ import annotations

from stages.artifacts import Artifact, ArtifactStore
from stages.train.burnin import train_burnin
from stages.train.distill import train_distill
from stages.train.runner import TrainRequest
from stages.train.xmod import train_xmod

STAGE_RUNS = {"burnin": train_burnin, "distill": train_distill, "xmod": train_xmod}


def train(store: ArtifactStore, request: TrainRequest) -> Artifact | None:
    """Run (or reuse, or resume) the training artifact ``request`` determines; with
    ``dry_run``, log its plan and return None."""
    return STAGE_RUNS[request.stage](store, request)


__all__ = ["TrainRequest", "train"]
