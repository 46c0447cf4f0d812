"""`diod train --stage distill`: teacher-student self-distillation (DIOD phase 2, SPEC 4).

Student and teacher both start from a burn-in artifact's final checkpoint. Each step the
teacher (an ``EmaTeacher``, always in eval mode so its BatchNorm uses averaged running
statistics, never the statistics of the batch it labels) sees the weak view the data loader
made; the student sees a strong, colour-only view of the same clip, so their maps align
pixel for pixel. The loss is eq. 5 with per-frame normalisation:

    L = L_s(M') + L_t(C) + L_fg(M') + MSE

L_s: the motion masks the teacher agrees with (M', eq. 4), L_t: the teacher's confident
candidates (C, eqs. 2-3), both matched to the student's foreground slots and weighted by
(1 + score); L_fg: eq. 1 with m'_fg. After every optimizer step the teacher follows the
unwrapped student by EMA (identical on every DDP rank).

Ablations of the paper's table 4: ``connection="one-to-one"``, ``motion_masks=False`` (only
the teacher's pseudo-labels; m_fg of eq. 1 is then the union of the kept candidates) and
``offline=True`` (labels from the frozen burn-in model: no EMA; the frozen labeller is
checkpointed as ``labeler``, not ``teacher``, so an export of such a run must name
``--which student``, the only network that trained).

Everything else (data, optimizer, precision, DDP, checkpoints, resume, logs, validation,
the artifact) is the burn-in's: ``stage.run_artifact`` and ``loop.run`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stages.artifacts import Artifact, ArtifactStore
from stages.distill.augment import StrongAugConfig, strong_view
from stages.distill.ema import EmaTeacher
from stages.distill.motion_filter import filter_motion_masks
from stages.distill.pseudolabels import CONNECTIONS, PseudoLabelConfig, teacher_candidates
from stages.errors import UserError
from stages.model import DIOD, DIODOutput
from stages.progress import log
from stages.train import checkpoint, losses
from stages.train.burnin import flat_maps, flat_masks
from stages.train.presets import preset
from stages.train.stage import (
    TrainConfig,
    loop_config,
    prepare_run,
    run_artifact,
    run_record,
    validator,
)

STAGE = "distill"
FORMAT_VERSION = 1
UPSTREAM = "burnin"

# Distillation defaults per preset, over the burn-in's resolved options. The full presets
# train 500 epochs as the paper (table 4c); synth-cpu is sized so that burn-in + distill
# stay within the CPU demo budget (TARGETS.md), see docs/results.md.
DISTILL_PRESETS: dict[str, dict[str, Any]] = {
    "kitti": dict(epochs=500, steps=None),
    "tripd": dict(epochs=500, steps=None),
    "movi": dict(epochs=500, steps=None),
    "synth-cpu": dict(steps=500, epochs=None, warmup=50, checkpoint_every=250, val_every=0),
}
# The network is the burn-in's: these options cannot change in distillation.
ARCHITECTURE = ("num_slots", "encoder_width", "decoder_channels", "gru_hidden")


@dataclass
class DistillConfig(TrainConfig):
    """Options of `diod train --stage distill`; None means "from the burn-in / preset"."""

    burnin: str | None = None  # burn-in artifact id (prefix); None: the newest complete one
    ema: float = 0.996
    threshold: float = 0.9
    min_area: int = 10
    connection: str = "one-to-many"
    score_map: str = "fg"
    motion_masks: bool = True
    offline: bool = False


def _step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the strong view at ``step``: a resumed run draws the same views."""
    return int(np.random.SeedSequence((seed, step, rank)).generate_state(1, np.uint64)[0] >> 1)


def _matched_term(
    maps: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, scores: torch.Tensor
) -> torch.Tensor:
    """Mean over frames that have targets of the (1 + score)-weighted matched BCE, each frame
    normalised by its number of matched masks (eqs. 3-4); 0 when no frame has any."""
    assign = losses.match_slots(maps, targets, valid)
    per_frame = losses.matched_bce(maps, targets, assign, 1.0 + scores)
    has = valid.any(dim=1)
    return per_frame[has].mean() if bool(has.any()) else per_frame.sum() * 0


@dataclass
class DistillObjective:
    """Eq. 5 for the student; the teacher labels the weak view and follows by EMA."""

    teacher: EmaTeacher
    labels: PseudoLabelConfig
    alpha: float = 0.3
    region: str = "all"
    motion_masks: bool = True
    offline: bool = False
    strong: StrongAugConfig = StrongAugConfig()
    seed: int = 0
    rank: int = 0
    name: str = "distill"

    def extra_state(self) -> dict[str, nn.Module]:
        # the DIOD inside the EMA wrapper: its state dict loads into a plain DIOD (export)
        return {"labeler" if self.offline else "teacher": self.teacher.module}

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        weak = batch["frames"]
        taught: DIODOutput = self.teacher(weak)
        t_maps = taught.masks.flatten(0, 1).float()  # (F, K, h, w)
        t_fg = 1.0 - t_maps[:, -1]
        candidates = teacher_candidates(t_maps, self.labels)

        generator = torch.Generator().manual_seed(_step_seed(self.seed, step, self.rank))
        strong = strong_view(weak, generator, self.strong)
        out: DIODOutput = model(strong)
        maps = flat_maps(out)  # (F, K, N)
        w_fg = 1.0 - maps[:, -1]

        c_targets = candidates.masks.flatten(2)
        l_t = _matched_term(maps, c_targets, candidates.valid, candidates.scores)
        if self.motion_masks:
            targets, valid = flat_masks(batch)
            frame_masks = targets.view(targets.shape[0], targets.shape[1], *t_fg.shape[1:])
            kept = filter_motion_masks(frame_masks, valid, t_fg, self.labels.threshold)
            l_s = _matched_term(maps, targets, kept.valid, kept.scores)
            m_fg = kept.fg.flatten(1)
            kept_masks = kept.valid.sum().item()
        else:
            l_s = maps.sum() * 0
            m_fg = (c_targets & candidates.valid.unsqueeze(-1)).any(dim=1)
            kept_masks = 0
        l_fg = losses.fg_bg_loss(w_fg, m_fg, self.alpha, self.region).mean()
        mse = losses.reconstruction_loss(out.recon, strong)  # the student's own input (eq. 5)
        total = l_s + l_t + l_fg + mse
        frames = t_maps.shape[0]
        return total, {
            "mse": mse.item(),
            "motion_bce": l_s.item(),
            "teacher_bce": l_t.item(),
            "fg_bg": l_fg.item(),
            "candidates_per_frame": candidates.valid.sum().item() / frames,
            "kept_masks_per_frame": kept_masks / frames,
        }

    def after_step(self, model: nn.Module, step: int) -> None:
        if not self.offline:
            self.teacher.update(model)


def resolved_options(config: DistillConfig, burnin_config: dict[str, Any]) -> dict[str, Any]:
    """The burn-in's resolved options, then the preset's distillation defaults, then every
    option the user gave."""
    name = config.preset or burnin_config.get("preset")
    name, _ = preset(name, config.dataset)  # validates the name
    given = {
        f.name: getattr(config, f.name)
        for f in fields(TrainConfig)
        if getattr(config, f.name) is not None
    }
    for key in ARCHITECTURE:
        if key in given and given[key] != burnin_config.get(key):
            raise UserError(
                f"--{key.replace('_', '-')} {given[key]}: distillation keeps the burn-in's "
                f"network ({key} = {burnin_config.get(key)}); drop the option"
            )
    out = {**burnin_config, **DISTILL_PRESETS.get(name, {}), **given, "preset": name}
    if config.steps is not None and config.epochs is not None:
        raise UserError("--steps and --epochs are exclusive: give one")
    if config.steps is not None:
        out["epochs"] = None
    if config.epochs is not None:
        out["steps"] = None
    if out.get("num_workers") is None:
        out["num_workers"] = burnin_config.get("num_workers", 1)
    out["input_size"] = tuple(out["input_size"])
    h, w = out["input_size"]
    if h % 4 or w % 4:
        raise UserError(f"--size {h}x{w}: both sides must be multiples of 4 (maps are at 1/4)")
    if config.connection not in CONNECTIONS:
        raise UserError(f"--connection {config.connection}: expected {' or '.join(CONNECTIONS)}")
    if not 0.0 <= config.ema <= 1.0:
        raise UserError(f"--ema {config.ema}: expected a keep rate in [0, 1]")
    return out


def distill(store: ArtifactStore, config: DistillConfig) -> Artifact:
    """Distil a burn-in artifact; returns the complete ``distill`` artifact."""
    burnin = store.resolve(config.dataset, UPSTREAM, config.burnin)
    state = checkpoint.final(burnin)
    options = resolved_options(config, state["config"])
    masks = store.get(config.dataset, "masks", burnin.upstream["masks"])
    root = Path(config.root) if config.root else Path(burnin.params["root"])
    setup = prepare_run(config, root, masks, options)
    labels = PseudoLabelConfig(
        threshold=config.threshold,
        min_area=config.min_area,
        connection=config.connection,
        score_map=config.score_map,
    )
    student: DIOD = checkpoint.model_from(state, "model")
    teacher = EmaTeacher(student, keep_rate=config.ema)
    objective = DistillObjective(
        teacher=teacher,
        labels=labels,
        alpha=options["alpha"],
        region=options["reg_region"],
        motion_masks=config.motion_masks,
        offline=config.offline,
        seed=config.seed,
        rank=setup.ranks.rank,
    )
    distill_params = {
        "burnin": burnin.id,
        "ema": None if config.offline else config.ema,
        "threshold": config.threshold,
        "min_area": config.min_area,
        "connection": config.connection,
        "score_map": config.score_map,
        "motion_masks": config.motion_masks,
        "offline": config.offline,
    }
    resolved, params = run_record(options, setup, root, student.config, distill=distill_params)
    validate = None
    scored = validator(config, root, options, setup)
    if scored is not None:
        # score what export uses by default: the teacher (the student when offline)
        def validate(model: nn.Module, step: int) -> dict[str, float]:
            return scored(model if config.offline else teacher.module, step)

    log.info(
        "distill from burnin/%s: %d steps (%d per epoch), batch %d x T=%d at %dx%d, %s%s%s, "
        "%s on %s",
        burnin.id,
        setup.steps,
        setup.steps_per_epoch,
        options["batch_size"],
        options["clip_length"],
        *setup.data.input_size,
        config.connection,
        "" if config.motion_masks else ", no motion masks",
        ", offline" if config.offline else f", EMA {config.ema}",
        setup.precision,
        setup.device,
    )
    return run_artifact(
        store,
        config.dataset,
        STAGE,
        params,
        {UPSTREAM: burnin},
        model=student,
        objective=objective,
        data=setup.data,
        loop=loop_config(options, setup.steps),
        resolved=resolved,
        validate=validate,
        resume=config.resume,
        force=config.force,
        format_version=FORMAT_VERSION,
    )
