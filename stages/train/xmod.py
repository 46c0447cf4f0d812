"""`diod train --stage xmod`: cross-modal distillation of a DIOD and a DIOD-3D model (xMOD,
Lahlali, Kara et al., CVPR 2025; SPEC-xMOD.md section 3, docs/lidar.md).

Two students, the RGB network and the LiDAR network (``CrossModalPair``), start from a
trained model of each modality (burn-in or distillation artifacts, or model files); their
teacher is the EMA of the pair, so each modality has its own teacher. Every step both
teachers label their weak view of the clip (RGB frames; the undropped range maps) and
both students learn from their strong view, on the same image-plane grid, so labels cross
between modalities without warping:

- each student's pseudo-label term L_t learns from the OTHER modality's teacher
  (``dist_source = cross``, the paper: the 2D teacher brings context and low-reflectivity
  objects to the 3D student, the 3D teacher geometry and dark frames to the 2D student), or
  from its own (``same``, the authors' code);
- each student's motion masks are kept where the other modality's teacher agrees
  (mean W_fg >= the threshold, weight 1 + that mean, eq. 4 across modalities), as the
  authors' code does.

Everything else is each network's own distillation (``distill.student_loss``): its loss
weights, alpha and completion come from its own source run resolved as a distillation
(a LiDAR network: the preset's ``lidar`` table), and the two losses add up under one
optimiser. The run's data, optimisation and runtime are the RGB network's run
(the two must agree on input size, clip length and top crop); the LiDAR run's
configuration and both sources are recorded in the artifact and its checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stages.artifacts import Artifact, ArtifactStore, file_sha256
from stages.distill.augment import StrongAugConfig, step_generator
from stages.distill.ema import EmaTeacher
from stages.errors import UserError
from stages.evaluate import dataset_root
from stages.lidar.augment import LidarAugment
from stages.model import DIOD
from stages.model.pair import MODALITIES, CrossModalPair
from stages.progress import log
from stages.train import checkpoint
from stages.train.config import DistillSettings, LossConfig, RunConfig
from stages.train.distill import student_loss, teacher_labels, views
from stages.train.initialise import read_trained_file
from stages.train.runner import (
    AUTO_SIZE,
    TrainRequest,
    prepare_run,
    resolve_request,
    run_artifact,
    validator,
)

OTHER = {"rgb": "lidar", "lidar": "rgb"}
#: what the two networks' runs must share: they see the same clips on the same grid
SHARED_DATA = ("input_size", "clip_length", "crop_top", "split")


@dataclass(frozen=True)
class Source:
    """A trained network to start from: its run's saved configuration (a model file's
    network and input geometry only), its weights, and what identifies it."""

    record: dict[str, Any]
    weights: dict[str, torch.Tensor]
    identity: dict[str, str]
    #: the scores of the source run's last validation, where it has them (artifacts)
    validation: dict[str, float] | None = None

    @property
    def name(self) -> str:
        """The artifact (dataset/stage/id) or file it was read from."""
        return next(iter(self.identity.values()))


def load_source(store: ArtifactStore, ref: str, option: str) -> Source:
    """``ref``: a model file (``diod export-model``), or a complete burn-in or distill
    artifact of any dataset (a distillation's teacher, as export)."""
    path = Path(ref)
    if path.suffix or path.exists():
        if not path.is_file():
            raise UserError(f"{option} {path}: file not found")
        trained = read_trained_file(path, option)
        identity = {"file": str(path.resolve()), "sha256": file_sha256(path)}
        return Source(trained.record, trained.weights, identity)
    artifact = checkpoint.find_trained(store, ref, option=option)
    if artifact.stage not in ("burnin", "distill"):
        raise UserError(f"{option} {ref}: an {artifact.stage} artifact; give a burn-in or distill")
    state = checkpoint.final(artifact)
    network = "teacher" if "teacher" in state.get("extra", {}) else "model"
    weights = checkpoint.model_from(state, network).state_dict()
    identity = {
        "artifact": f"{artifact.dataset}/{artifact.stage}/{artifact.id}",
        "network": network,
    }
    validation = artifact.manifest.get("summary", {}).get("validation")
    return Source(state["config"], weights, identity, validation)


def warn_if_blind(sources: dict[str, Source]) -> None:
    """A source that found no object on its validation split (F1@50 0: not one of its
    segments matched an object at IoU 0.5) makes a teacher that keeps none of the other
    student's motion masks and labels nothing: that student, then its teacher, then the
    first student fall to all-background (seen with a DIOD-3D burn-in on sparse sweeps:
    docs/lidar.md). Said before the run, not refused: a validation split can be unlike the
    training data."""
    for modality, source in sources.items():
        if source.validation and source.validation.get("f1_50") == 0:
            log.warning(
                "--%s-model %s found no object on its validation split (F1@50 0): its teacher "
                "will keep none of the %s student's motion masks and give it no pseudo-labels; "
                "xMOD then turns both networks to background (docs/lidar.md)",
                modality,
                source.name,
                OTHER[modality],
            )


def resolve_pair(request: TrainRequest, sources: dict[str, Source]) -> tuple[RunConfig, RunConfig]:
    """Each network's run, resolved as a distillation of its source with what was given;
    the RGB one leads (data, optimisation, runtime). Raises UserError when a source has the
    wrong modality or the two do not see the same clips."""
    configs = {m: resolve_request(request, sources[m].record) for m in MODALITIES}
    for modality, config in configs.items():
        if config.model.modality != modality:
            raise UserError(
                f"--{modality}-model {request_ref(request, modality)}: a "
                f"{config.model.modality} network; expected a {modality} one"
            )
    for key in SHARED_DATA:
        a, b = (getattr(configs[m].data, key) for m in MODALITIES)
        if a != b:
            raise UserError(
                f"--rgb-model and --lidar-model: trained with {key} {a} and {b}; xMOD trains "
                f"both networks on the same clips: give two models trained with one {key}"
            )
    return configs["rgb"], configs["lidar"]


def request_ref(request: TrainRequest, modality: str) -> str:
    return request.rgb_model if modality == "rgb" else request.lidar_model


@dataclass
class XmodObjective:
    """Both students' eq. 5 with labels crossed between modalities; the pair's teacher
    follows the pair by EMA."""

    teacher: EmaTeacher
    settings: dict[str, DistillSettings]
    losses: dict[str, LossConfig]
    strong: StrongAugConfig = StrongAugConfig()
    seed: int = 0
    rank: int = 0
    name: str = "xmod"

    @property
    def dist_source(self) -> str:
        return self.settings["rgb"].dist_source

    def extra_state(self) -> dict[str, nn.Module]:
        return {"teacher": self.teacher.module}

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        generator = step_generator(self.seed, step, self.rank)
        seen = {m: views(batch, m == "lidar", generator, self.strong) for m in MODALITIES}
        weak = torch.cat([seen[m][0] for m in MODALITIES], dim=2)
        strong = torch.cat([seen[m][1] for m in MODALITIES], dim=2)
        taught = self.teacher(weak, reconstruct=False)
        out = model(strong)  # through the (DDP) pair's own forward
        labels = {
            m: teacher_labels(getattr(taught, m), self.settings[m].labels) for m in MODALITIES
        }
        total = strong.new_zeros(())
        terms: dict[str, float] = {}
        for m in MODALITIES:
            source = OTHER[m] if self.dist_source == "cross" else m
            _weak, student_view, projection = seen[m]
            loss, own = student_loss(
                getattr(out, m),
                student_view,
                projection,
                batch,
                labels[source],
                labels[OTHER[m]].fg,
                self.settings[m],
                self.losses[m],
            )
            total = total + loss
            terms |= {f"{m}_{key}": value for key, value in own.items()}
        return total, terms

    def after_step(self, model: nn.Module, step: int) -> None:
        self.teacher.update(model)


def train_xmod(store: ArtifactStore, request: TrainRequest) -> Artifact | None:
    """xMOD from an RGB and a LiDAR model on a masks artifact; returns the ``xmod`` artifact."""
    if request.given.get("input_size") == AUTO_SIZE:
        raise UserError("--size auto: xMOD trains at its two models' input size; drop the option")
    if request.rgb_model is None or request.lidar_model is None:
        raise UserError("--stage xmod: give --rgb-model and --lidar-model (artifact ids or files)")
    sources = {m: load_source(store, request_ref(request, m), f"--{m}-model") for m in MODALITIES}
    rgb_config, lidar_config = resolve_pair(request, sources)
    warn_if_blind(sources)
    if rgb_config.distill.offline:
        raise UserError("--offline: xMOD's teachers follow their students (no offline variant)")
    masks = store.resolve(request.dataset, "masks", request.masks)
    root = Path(request.root) if request.root else dataset_root(store, masks)
    setup = prepare_run(
        rgb_config,
        root,
        masks,
        LidarAugment(lidar_config.data.point_drop, lidar_config.model.lidar_fill),
    )
    setup.partner = lidar_config
    setup.sources = {m: sources[m].identity for m in MODALITIES}
    log.info("%s", setup.plan())
    if request.dry_run:
        return None
    networks = {}
    for modality, config in (("rgb", rgb_config), ("lidar", lidar_config)):
        networks[modality] = DIOD(config.model)
        try:
            networks[modality].load_state_dict(sources[modality].weights)
        except RuntimeError:
            raise UserError(
                f"--{modality}-model {request_ref(request, modality)}: its weights do not fit "
                "the network its configuration describes (an xmod checkpoint?)"
            ) from None
    pair = CrossModalPair(networks["rgb"], networks["lidar"])
    teacher = EmaTeacher(pair, keep_rate=rgb_config.distill.ema)
    objective = XmodObjective(
        teacher=teacher,
        settings={"rgb": rgb_config.distill, "lidar": lidar_config.distill},
        losses={"rgb": rgb_config.losses, "lidar": lidar_config.losses},
        seed=rgb_config.loop.seed,
        rank=setup.ranks.rank,
    )
    validate = None
    scored = validator(setup)
    if scored is not None:

        def validate(model: nn.Module, step: int) -> dict[str, float]:
            """Both teachers (what export uses by default), each on its own input."""
            return {
                f"{m}_{key}": value
                for m in MODALITIES
                for key, value in scored(teacher.module.network(m), step).items()
            }

    log.info(
        "xmod (labels %s) from %s and %s: %d steps, batch %d x T=%d at %dx%d, %s on %s",
        objective.dist_source,
        *(sources[m].name for m in MODALITIES),
        setup.steps,
        rgb_config.loop.batch_size,
        rgb_config.data.clip_length,
        *setup.data.input_size,
        rgb_config.loop.precision,
        setup.device,
    )
    return run_artifact(
        store, setup, {"masks": masks}, request, model=pair, objective=objective, validate=validate
    )
