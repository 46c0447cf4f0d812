"""`diod train --stage burnin` (paper 3.2, docs/training.md): BMOD trained on motion masks, with DIOD's
regularisation of the whole foreground map.

Per frame: Hungarian-match the motion masks to the K-1 foreground slots, size-weighted BCE
on the matched maps, the fg/bg loss (eq. 1) on W_fg = 1 - W_bg against the union of the
masks, and the MSE reconstruction of the clip:
    L = rec_weight MSE + mean over frames with masks of L_bce + mean over frames of L_fg.

DIOD-3D (a ``lidar`` model, SPEC-xMOD.md section 2) is the same loss on the clip's range
maps (points dropped as augmentation), with scene completion in place of the MSE: the
dense 4-channel output scored where the target has a point; the 2D motion masks supervise
the maps over all pixels, with or without a point. The authors' weights: rec_weight 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from stages.artifacts import Artifact, ArtifactStore
from stages.distill.augment import step_generator, strong_view
from stages.evaluate import dataset_root
from stages.model import DIOD, DIODOutput
from stages.progress import log
from stages.train import losses
from stages.train.config import LossConfig
from stages.train.runner import (
    TrainRequest,
    auto_size,
    prepare_run,
    resolve_request,
    run_artifact,
    validator,
)


def flat_maps(out: DIODOutput) -> torch.Tensor:
    """(B, T, K, h, w) -> (F, K, N) float32, the layout of ``losses``."""
    return out.masks.flatten(0, 1).flatten(2).float()


def flat_masks(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded masks (B, T, M, h, w) and valid (B, T, M) -> (F, M, N) and (F, M)."""
    masks = batch["masks"].flatten(0, 1).flatten(2)
    valid = batch["valid"].flatten(0, 1)
    return masks & valid.unsqueeze(-1), valid


def motion_terms(
    maps: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, clips: int, frames: str
) -> torch.Tensor:
    """The size-weighted matched BCE of the motion masks, combined over frames as
    ``losses.over_frames``."""
    assign = losses.match_slots(maps, targets, valid)
    per_frame = losses.matched_bce(maps, targets, assign, losses.size_weight(targets))
    return losses.over_frames(per_frame, valid.any(dim=1), clips, frames)


def reconstruction_term(
    recon: torch.Tensor, seen: torch.Tensor, projection: torch.Tensor | None, config: LossConfig
) -> tuple[str, torch.Tensor]:
    """The weighted reconstruction term and its log name: an RGB model (``projection``
    None), the MSE of the frames it saw (``seen``); a LiDAR model, scene completion against
    the clip's ``projection`` before point drop, or ``seen`` itself (``completion_target``)."""
    if projection is None:
        return "mse", config.rec_weight * losses.reconstruction_loss(recon, seen, config.mse_range)
    target = seen if config.completion_target == "input" else projection
    return "completion", config.rec_weight * losses.completion_loss(recon, target)


@dataclass
class BurninObjective:
    """Burn-in's loss; with ``strong`` the model sees (and reconstructs) the strong colour
    view of each clip, drawn from (seed, step, rank) as distillation's student views; with
    ``lidar`` it sees the clip's range maps."""

    losses: LossConfig
    strong: bool = False
    lidar: bool = False
    seed: int = 0
    rank: int = 0
    name: str = "burnin"

    def extra_state(self) -> dict[str, nn.Module]:
        return {}

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        seen = batch["lidar" if self.lidar else "frames"]
        if self.strong:
            seen = strong_view(seen, step_generator(self.seed, step, self.rank))
        out: DIODOutput = model(seen)
        maps = flat_maps(out)
        targets, valid = flat_masks(batch)
        projection = batch["lidar_target"] if self.lidar else None
        rec_name, rec = reconstruction_term(out.recon, seen, projection, self.losses)
        bce = motion_terms(maps, targets, valid, seen.shape[0], self.losses.bce_frames)
        m_fg = targets.any(dim=1)
        fg = losses.fg_bg_loss(
            1 - maps[:, -1], m_fg, self.losses.alpha, self.losses.reg_region
        ).mean()
        total = rec + bce + fg
        return total, {rec_name: rec.item(), "bce": bce.item(), "fg_bg": fg.item()}

    def after_step(self, model: nn.Module, step: int) -> None:
        return None


def train_burnin(store: ArtifactStore, request: TrainRequest) -> Artifact | None:
    """Burn-in on a masks artifact; returns the complete ``burnin`` artifact."""
    config = resolve_request(request)
    masks = store.resolve(request.dataset, "masks", request.masks)
    root = Path(request.root) if request.root else dataset_root(store, masks)
    config = auto_size(request, config, root)
    setup = prepare_run(config, root, masks)
    log.info("%s", setup.plan())
    if request.dry_run:
        return None
    torch.manual_seed(config.loop.seed)
    model = DIOD(config.model)
    setup.initialise(store, request.init, model)
    log.info(
        "burn-in (%s): preset %s, %d steps (%d per epoch), batch %d x T=%d at %dx%d, K=%d, %s on %s",
        config.model.modality,
        config.preset,
        setup.steps,
        setup.steps_per_epoch,
        config.loop.batch_size,
        config.data.clip_length,
        *setup.data.input_size,
        config.model.num_slots,
        config.loop.precision,
        setup.device,
    )
    return run_artifact(
        store,
        setup,
        {"masks": masks},
        request,
        model=model,
        objective=BurninObjective(
            config.losses,
            strong=config.data.strong_view,
            lidar=config.model.modality == "lidar",
            seed=config.loop.seed,
            rank=setup.ranks.rank,
        ),
        validate=validator(setup),
    )
