"""`diod train --stage distill`: teacher-student self-distillation (DIOD phase 2, paper 3.3).

Student and teacher both start from a burn-in artifact's final checkpoint, or (``--init``)
from another trained model's weights on this dataset's motion masks, as the authors' KITTI
recipe distils their TRI-PD model without a KITTI burn-in. Each step the
teacher (an ``EmaTeacher``, always in eval mode so its BatchNorm uses averaged running
statistics, never the statistics of the batch it labels) sees the weak view the data loader
made; the student sees a strong, colour-only view of the same clip, so their maps align
pixel for pixel. The loss is eq. 5 with per-frame normalisation:

    L = L_s(M') + L_t(C) + L_fg(M') + MSE

L_s: the motion masks the teacher agrees with (M', eq. 4), L_t: the teacher's confident
candidates (C, eqs. 2-3), both matched to the student's foreground slots and weighted by
(1 + score); L_fg: eq. 1 with m'_fg. After every optimizer step the teacher follows the
unwrapped student by EMA (identical on every DDP rank).

A LiDAR model (DIOD-3D, SPEC-xMOD.md section 2) distils the same way on range maps: the
teacher sees the clip's input before point drop (its weak view), the student the dropped
one (its strong view, the same pixels), and the reconstruction term is scene
completion (``burnin.reconstruction_term``); the authors' weights are the preset's (50 for
completion, alpha 0.4). Their code feeds both networks the same input and does not filter
the motion masks; ours filters them with the teacher, as DIOD.

Ablations of the paper's table 4: ``connection="one-to-one"``, ``motion_masks=False`` (only
the teacher's pseudo-labels; m_fg of eq. 1 is then the union of the kept candidates) and
``offline=True`` (labels from the frozen burn-in model: no EMA; the frozen labeller is
checkpointed as ``labeler``, not ``teacher``, so an export of such a run must name
``--which student``, the only network that trained).

Everything else (data, optimizer, precision, DDP, checkpoints, resume, logs, validation,
the artifact) is the burn-in's: ``runner.run_artifact`` and ``loop.run`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from stages.artifacts import Artifact, ArtifactStore
from stages.distill.augment import StrongAugConfig, step_generator, strong_view
from stages.distill.ema import EmaTeacher
from stages.distill.motion_filter import filter_motion_masks
from stages.distill.pseudolabels import Candidates, PseudoLabelConfig, teacher_candidates
from stages.errors import UserError
from stages.evaluate import dataset_root
from stages.model import DIOD, DIODOutput
from stages.progress import log
from stages.train import checkpoint, losses
from stages.train.burnin import flat_maps, flat_masks, reconstruction_term
from stages.train.config import DistillSettings, LossConfig
from stages.train.runner import (
    TrainRequest,
    auto_size,
    prepare_run,
    resolve_request,
    run_artifact,
    validator,
)


def _matched_term(
    maps: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor,
    scores: torch.Tensor,
    clips: int,
    frames: str,
) -> torch.Tensor:
    """The (1 + score)-weighted matched BCE (eqs. 3-4), each frame normalised by its number
    of matched masks, combined over frames as ``losses.over_frames``."""
    assign = losses.match_slots(maps, targets, valid)
    per_frame = losses.matched_bce(maps, targets, assign, 1.0 + scores)
    return losses.over_frames(per_frame, valid.any(dim=1), clips, frames)


@dataclass
class TeacherLabels:
    """What a teacher's pass over the weak view gives a student: its confident candidates
    (eqs. 2-3) and its foreground map W_fg (F, h, w), which judges the motion masks (eq. 4)."""

    candidates: Candidates
    fg: torch.Tensor


def teacher_labels(taught: DIODOutput, config: PseudoLabelConfig) -> TeacherLabels:
    maps = taught.masks.flatten(0, 1).float()  # (F, K, h, w)
    return TeacherLabels(teacher_candidates(maps, config), 1.0 - maps[:, -1])


def student_loss(
    out: DIODOutput,
    seen: torch.Tensor,
    projection: torch.Tensor | None,
    batch: dict[str, torch.Tensor],
    labels: TeacherLabels,
    judge: torch.Tensor,
    settings: DistillSettings,
    config: LossConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 5 for one student that saw ``seen`` and gave ``out``: L_t on ``labels``'
    candidates, L_s on the motion masks whose mean under the foreground map ``judge`` reaches
    the threshold (eq. 4), L_fg, and the reconstruction term (``burnin.reconstruction_term``;
    ``projection``: a LiDAR clip's undropped maps). DIOD: ``labels`` and ``judge`` are the
    student's own teacher's; xMOD crosses them between the modalities."""
    maps = flat_maps(out)  # (F, K, N)
    w_fg = 1.0 - maps[:, -1]
    candidates = labels.candidates
    c_targets = candidates.masks.flatten(2)
    clips, frames_how = seen.shape[0], config.bce_frames
    l_t = _matched_term(maps, c_targets, candidates.valid, candidates.scores, clips, frames_how)
    if settings.motion_masks:
        targets, valid = flat_masks(batch)
        frame_masks = targets.view(targets.shape[0], targets.shape[1], *judge.shape[1:])
        kept = filter_motion_masks(frame_masks, valid, judge, settings.labels.threshold)
        l_s = _matched_term(maps, targets, kept.valid, kept.scores, clips, frames_how)
        m_fg = kept.fg.flatten(1)
        kept_masks = kept.valid.sum().item()
    else:
        l_s = maps.sum() * 0
        m_fg = (c_targets & candidates.valid.unsqueeze(-1)).any(dim=1)
        kept_masks = 0
    l_fg = losses.fg_bg_loss(w_fg, m_fg, config.alpha, config.reg_region).mean()
    # the student's own input (eq. 5), or the scene it completes
    rec_name, rec = reconstruction_term(out.recon, seen, projection, config)
    frames = maps.shape[0]
    return l_s + l_t + l_fg + rec, {
        rec_name: rec.item(),
        "motion_bce": l_s.item(),
        "teacher_bce": l_t.item(),
        "fg_bg": l_fg.item(),
        "candidates_per_frame": candidates.valid.sum().item() / frames,
        "kept_masks_per_frame": kept_masks / frames,
    }


def views(
    batch: dict[str, torch.Tensor], lidar: bool, generator: torch.Generator, strong: StrongAugConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(teacher's weak view, student's strong view, the completion target or None): RGB, the
    loader's clip and its strong colour view; LiDAR, the network's input before and after
    point drop (the same pixels), and the sparse projection."""
    if lidar:
        return batch["lidar_weak"], batch["lidar"], batch["lidar_target"]
    return batch["frames"], strong_view(batch["frames"], generator, strong), None


@dataclass
class DistillObjective:
    """Eq. 5 for the student; the teacher labels the weak view and follows by EMA."""

    teacher: EmaTeacher
    settings: DistillSettings
    losses: LossConfig
    strong: StrongAugConfig = StrongAugConfig()
    lidar: bool = False
    seed: int = 0
    rank: int = 0
    name: str = "distill"

    def extra_state(self) -> dict[str, nn.Module]:
        # the DIOD inside the EMA wrapper: its state dict loads into a plain DIOD (export)
        return {"labeler" if self.settings.offline else "teacher": self.teacher.module}

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        generator = step_generator(self.seed, step, self.rank)
        weak, strong, projection = views(batch, self.lidar, generator, self.strong)
        labels = teacher_labels(self.teacher(weak, reconstruct=False), self.settings.labels)
        out: DIODOutput = model(strong)
        return student_loss(
            out, strong, projection, batch, labels, labels.fg, self.settings, self.losses
        )

    def after_step(self, model: nn.Module, step: int) -> None:
        if not self.settings.offline:
            self.teacher.update(model)


def train_distill(store: ArtifactStore, request: TrainRequest) -> Artifact | None:
    """Distil a burn-in artifact; returns the complete ``distill`` artifact."""
    if request.init is None:
        burnin = store.resolve(request.dataset, "burnin", request.burnin)
        state = checkpoint.final(burnin)
        record = state["config"]
        masks = store.get(request.dataset, "masks", burnin.upstream["masks"])
        root = Path(request.root) if request.root else Path(burnin.params["root"])
        upstream = {"burnin": burnin}
        origin = f"burnin/{burnin.id}"
    else:  # straight from another model, on this dataset's masks (the authors' KITTI recipe)
        if request.burnin is not None:
            raise UserError("--init and --burnin: a distillation starts from one of them")
        record = None
        masks = store.resolve(request.dataset, "masks", request.masks)
        root = Path(request.root) if request.root else dataset_root(store, masks)
        upstream = {"masks": masks}
        origin = request.init
    config = auto_size(request, resolve_request(request, record), root, record)
    settings: DistillSettings = config.distill
    setup = prepare_run(config, root, masks)
    log.info("%s", setup.plan())
    if request.dry_run:
        return None
    if record is None:
        torch.manual_seed(config.loop.seed)
        student = DIOD(config.model)
        setup.initialise(store, request.init, student)
    else:
        student = checkpoint.model_from(state, "model")
    teacher = EmaTeacher(student, keep_rate=settings.ema)
    objective = DistillObjective(
        teacher=teacher,
        settings=settings,
        losses=config.losses,
        lidar=config.model.modality == "lidar",
        seed=config.loop.seed,
        rank=setup.ranks.rank,
    )
    validate = None
    scored = validator(setup)
    if scored is not None:
        # score what export uses by default: the teacher (the student when offline)
        def validate(model: nn.Module, step: int) -> dict[str, float]:
            return scored(model if settings.offline else teacher.module, step)

    log.info(
        "distill from %s: %d steps (%d per epoch), batch %d x T=%d at %dx%d, %s%s%s, %s on %s",
        origin,
        setup.steps,
        setup.steps_per_epoch,
        config.loop.batch_size,
        config.data.clip_length,
        *setup.data.input_size,
        settings.labels.connection,
        "" if settings.motion_masks else ", no motion masks",
        ", offline" if settings.offline else f", EMA {settings.ema}",
        config.loop.precision,
        setup.device,
    )
    return run_artifact(
        store,
        setup,
        upstream,
        request,
        model=student,
        objective=objective,
        validate=validate,
    )
