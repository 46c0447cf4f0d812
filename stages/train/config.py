"""The configuration of one training run: typed sections of declared settings, resolved
from preset + config file + command line by ``resolve``, the one function the CLI, the
tests and the benchmarks call.

Sections: ``model`` (the network, paper 4.3), ``data`` (what a clip is), ``loop`` (the
optimisation, paper 3.2), ``losses`` (eq. 1 and its region), ``distill`` (phase 2, paper 3.3;
distillation only) and ``runtime`` (where and how the run goes: not what it computes, so
left out of the artifact id). Everything else is hashed: a new setting changes the id of
the runs that change it, without a list to keep up to date.

Resolution order, later wins: the declarations' defaults (the paper's values), the preset
(stages.train.presets; with a DINOv2 encoder, then its ``dinov2`` table: the input size),
then every setting given (config file or command line; a TOML table's keys are the
settings' flag names). A DINOv2 weights file is then pinned: its absolute path and sha256
go into the model section. Distillation starts from its burn-in's resolved
configuration instead of the defaults (same network, data and optimiser unless told
otherwise), then the preset's distillation values, then what is given; the network cannot
change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from stages.distill.pseudolabels import PseudoLabelConfig
from stages.hardware import DEVICE, PRECISION, WORKERS, model_precision
from stages.model import ModelConfig
from stages.model.dinov2 import PATCH, is_dinov2
from stages.model.encoder import ResNet18Encoder
from stages.settings import (
    FLAG,
    SIZE,
    TEXT,
    Setting,
    SettingError,
    Settings,
    build,
    choice,
    declared,
    flatten,
    floats,
    ints,
    section,
    show,
)
from stages.train.data import EPOCHS
from stages.train.losses import COLOUR_RANGES, COMPLETION_TARGETS, FRAME_REDUCTIONS, REGIONS
from stages.train.memory_format import AUTO, MEMORY_FORMATS
from stages.train.presets import DEFAULT_FOR_DATASET, PRESETS

STAGES = ("burnin", "distill", "xmod")
#: stages trained by distillation: xMOD (cross-modal, stages.train.xmod) resolves each of its
#: two networks' runs as a distillation of that network
DISTILLING = ("distill", "xmod")
DIST_SOURCES = ("cross", "same")
DINOV2 = "dinov2"  # a preset's table of what a DINOv2 encoder changes (its input size)
LIDAR = "lidar"  # a preset's table of what a LiDAR model changes (loss weights, point drop)
TABLES = ("distill", DINOV2, LIDAR)  # a preset's tables that are not burn-in settings


@dataclass(frozen=True)
class DataConfig(Settings):
    """What one training clip is."""

    split: str = Setting("train", TEXT, "Split trained on.").field()
    clip_length: int = Setting(5, ints(1), "T, frames per clip.").field()
    input_size: tuple[int, int] = Setting(
        (368, 1248),
        SIZE,
        "Model input HxW, multiples of 4 (the maps are at 1/4; 28 with a DINOv2 encoder); "
        "auto: the training videos' aspect ratio at about the preset's area.",
        flag="size",
    ).field()
    crop_top: float = Setting(
        0.0,
        floats(0, 1, high_open=True),
        "Fraction of the frame height left out at the top (TRI-PD: its top 128 of 608 rows).",
    ).field()
    augment: bool = Setting(
        True, FLAG, "Weak-view augmentation of the clips: random resized crop and flip."
    ).field()
    strong_view: bool = Setting(
        False,
        FLAG,
        "Burn-in: the model sees and reconstructs the strong colour view of each clip (jitter, "
        "grayscale, solarize), as the authors' burn-in; distillation's student always does.",
    ).field()
    point_drop: float = Setting(
        0.1,
        floats(0, 1, high_open=True),
        "LiDAR models: with this probability a clip's input loses this share of its points "
        "(the authors' one number for both: KITTI 0.1, TRI-PD 0.4).",
    ).field()
    epoch: str = Setting(
        "windows",
        choice(*EPOCHS),
        "What one epoch is: every T-frame window of every training video (windows), or one "
        "random window per video (videos, as the authors' code: 200-frame TRI-PD videos make "
        "an epoch 196x shorter).",
    ).field()

    def check(self) -> None:
        """The map stride, which every encoder has; the encoder's own multiple is checked
        with the model section (``RunConfig``), which this section cannot see."""
        stride = ResNet18Encoder.STRIDE
        check_input_size(self.input_size, stride, f"the maps are at 1/{stride}")


def check_input_size(size: tuple[int, int], multiple: int, why: str) -> None:
    if any(side % multiple for side in size):
        raise SettingError(
            "input_size",
            f" {size[0]}x{size[1]}: both sides must be multiples of {multiple} ({why})",
        )


@dataclass(frozen=True)
class LoopConfig(Settings):
    """The optimisation (paper 3.2): its length, Adam, the schedule, numerics."""

    steps: int | None = Setting(
        None, ints(1, optional=True), "Optimizer steps (or give epochs)."
    ).field()
    epochs: int | None = Setting(
        None, ints(1, optional=True), "Passes over the training clips (instead of steps)."
    ).field()
    batch_size: int = Setting(8, ints(1), "Clips per step and process.").field()
    lr: float = Setting(5e-4, floats(0, low_open=True), "Adam learning rate.").field()
    warmup: int = Setting(3000, ints(0), "Linear learning-rate warm-up steps.").field()
    decay: int = Setting(
        50_000, ints(1), "Steps per halving of the learning rate (continuous)."
    ).field()
    grad_clip: float = Setting(
        1.0, floats(0, low_open=True), "Largest gradient norm (clipped above)."
    ).field()
    seed: int = Setting(0, ints(), "Seed of initialisation, data order and augmentation.").field()
    precision: str = PRECISION.field()

    def check(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise SettingError("steps", ": give exactly one of steps and epochs")


@dataclass(frozen=True)
class LossConfig(Settings):
    """The foreground/background term (eq. 1), shared by both stages."""

    alpha: float = Setting(0.3, floats(0), "Strength of the fg/bg regularisation (eq. 1).").field()
    reg_region: str = Setting(
        "all",
        choice(*REGIONS),
        "Where W_fg is regularised: the whole map (DIOD) or outside the masks (BMOD).",
    ).field()
    bce_frames: str = Setting(
        "mean",
        choice(*FRAME_REDUCTIONS),
        "How a clip's frames combine in the matched-mask BCE terms: the mean over frames with "
        "masks (a term's weight does not grow with T), or the authors' sum over the T frames, "
        "averaged over clips (frames without masks count 0: about T times stronger).",
    ).field()
    rec_weight: float = Setting(
        1.0,
        floats(0),
        "Weight of the reconstruction term: the RGB MSE, or a LiDAR model's scene completion "
        "(the authors' DIOD-3D: 100 in burn-in, 50 in distillation).",
    ).field()
    completion_target: str = Setting(
        "projection",
        choice(*COMPLETION_TARGETS),
        "LiDAR models: what the completion loss scores the dense output against: the clip's "
        "projected sweep before point drop (dropped points are to be filled in), or the "
        "model's own input (the authors': a dropped point is never asked for).",
    ).field()
    mse_range: str = Setting(
        "unit",
        choice(*COLOUR_RANGES),
        "Colour range of the reconstruction MSE: [0, 1] (unit), or the authors' [-1, 1] "
        "(signed: 4 times the loss).",
    ).field()


@dataclass(frozen=True)
class DistillSettings(Settings):
    """Teacher-student self-distillation (paper 3.3)."""

    ema: float = Setting(0.996, floats(0, 1), "Teacher EMA keep rate (3.3.1).").field()
    labels: PseudoLabelConfig = section(PseudoLabelConfig)
    motion_masks: bool = Setting(
        True,
        FLAG,
        "Supervise with the motion masks the teacher agrees with (eq. 4); off: only the "
        "teacher's pseudo-labels (table-4 ablation).",
    ).field()
    offline: bool = Setting(
        False,
        FLAG,
        "Labels from the frozen burn-in model, no EMA teacher (table-4 ablation).",
    ).field()
    dist_source: str = Setting(
        "cross",
        choice(*DIST_SOURCES),
        "xMOD only: whose teacher's pseudo-labels each student learns from: the other "
        "modality's (cross, the paper) or its own (same, the authors' code); the motion masks "
        "are judged by the other modality's teacher either way.",
    ).field()


@dataclass(frozen=True)
class RuntimeConfig(Settings):
    """Where and how a run goes, not what it computes: left out of the artifact id."""

    device: str = DEVICE.field()
    num_workers: int | None = WORKERS.field()
    threads: int | None = Setting(
        None,
        ints(1, optional=True),
        "CPU threads of the training process [default: the cores idle at its start, at least "
        "one: more threads than free cores stall every step].",
    ).field()
    memory_format: str = Setting(
        AUTO,
        choice(*MEMORY_FORMATS),
        "Memory format of the convolutions (auto: the faster of the two, timed at the start "
        "on this device and kept on resume; stages.train.memory_format).",
    ).field()
    checkpoint_every: int = Setting(2000, ints(1), "Steps between checkpoints.").field()
    keep_checkpoints: int = Setting(2, ints(1), "Newest checkpoints kept.").field()
    log_every: int = Setting(25, ints(1), "Steps between log lines.").field()
    val_every: int = Setting(
        5000, ints(0), "Steps between validations on val_split (0: at the end only)."
    ).field()
    val_split: str = Setting("val", TEXT, "Split scored during training ('' for none).").field()
    val_videos: int = Setting(8, ints(1), "Videos of val_split scored.").field()


MODEL_DEFAULTS = dict(declared(ModelConfig))
DATA_DEFAULTS = dict(declared(DataConfig))

# Every section by name; ``distill`` exists in distillation runs only.
SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "loop": LoopConfig,
    "losses": LossConfig,
    "distill": DistillSettings,
    "runtime": RuntimeConfig,
}
RUNTIME = "runtime"


def stage_sections(stage: str) -> dict[str, type]:
    return {k: v for k, v in SECTIONS.items() if k != "distill" or stage in DISTILLING}


#: settings of one stage only, beyond their section's (the section is shared)
STAGE_ONLY = {"dist_source": "xmod"}


def setting_names(stage: str) -> dict[str, str]:
    """Flat setting name -> its section, for the sections of ``stage``."""
    return {name: key for key, cls in stage_sections(stage).items() for name, _ in declared(cls)}


@dataclass(frozen=True)
class RunConfig:
    """One training run, fully resolved: a section per field of ``SECTIONS``."""

    stage: str
    dataset: str
    preset: str
    model: ModelConfig
    data: DataConfig
    loop: LoopConfig
    losses: LossConfig
    runtime: RuntimeConfig
    distill: DistillSettings | None = None

    def __post_init__(self) -> None:
        """Rules between sections: the input suits the encoder (DINOv2: lcm of its
        14-pixel patches and the 1/4 maps); range maps have no colours to jitter."""
        model = self.model
        if model.modality == "lidar" and self.data.strong_view:
            raise SettingError(
                "strong_view",
                ": a colour view of LiDAR range maps does not exist; drop the option for "
                "--modality lidar",
            )
        if is_dinov2(model.encoder):
            why = f"{model.encoder}: {PATCH}-pixel patches and maps at 1/{ResNet18Encoder.STRIDE}"
            check_input_size(self.data.input_size, model.input_multiple, why)

    def sections(self) -> dict[str, Settings]:
        return {k: getattr(self, k) for k in SECTIONS if getattr(self, k) is not None}

    def to_dict(self) -> dict[str, Any]:
        """Everything, nested by section (what checkpoints keep)."""
        return {
            "stage": self.stage,
            "dataset": self.dataset,
            "preset": self.preset,
            **{k: v.to_dict() for k, v in self.sections().items()},
        }

    def identity(self) -> dict[str, Any]:
        """What the run computes: everything but the runtime section (the artifact id)."""
        return {k: v for k, v in self.to_dict().items() if k != RUNTIME}


def preset_values(name: str, stage: str) -> dict[str, Any]:
    """The flat values preset ``name`` sets for ``stage`` (distillation: only its own)."""
    return _stage_values(PRESETS[name], stage)


def _stage_values(table: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """A preset table's values for ``stage``: its ``distill`` table, or its burn-in values."""
    if stage in DISTILLING:
        return dict(table.get("distill", {}))
    return {k: v for k, v in table.items() if k not in TABLES}


def _modality_values(
    name: str, values: dict[str, Any], given: Mapping[str, Any], stage: str
) -> dict[str, Any]:
    """``values`` with preset ``name``'s LiDAR table for ``stage`` layered under what was
    given, when the run's network is a LiDAR one (DIOD-3D)."""
    if values.get("modality", MODEL_DEFAULTS["modality"].default) != "lidar":
        return values
    return _layer(_layer(values, _stage_values(PRESETS[name].get(LIDAR, {}), stage)), given)


def _preset_burnin(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """What a burn-in of preset ``name`` would have recorded for the network ``given``
    describes: the record a distillation straight from another model (``--init``) lacks.
    A DINOv2 network's includes the preset's DINOv2 table (its input size), a LiDAR
    network's the preset LiDAR table's burn-in values (``lidar_fill``)."""
    values = _encoder_values(name, _layer(preset_values(name, "burnin"), given), given)
    return _modality_values(name, values, given, "burnin")


def _encoder_values(name: str, values: dict[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with preset ``name``'s DINOv2 table (its input size, a multiple of 28)
    layered under what was given, when the run's encoder is a DINOv2 one."""
    if not is_dinov2(values.get("encoder", "")):
        return values
    return _layer(_layer(values, PRESETS[name].get(DINOV2, {})), given)


def _layer(values: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` overridden by ``layer``; a layer that sets steps or epochs clears the other
    (the run length is given one way)."""
    out = {**values, **layer}
    if "steps" in layer and "epochs" not in layer:
        out["epochs"] = None
    if "epochs" in layer and "steps" not in layer:
        out["steps"] = None
    return out


def _preset_name(preset: str | None, dataset: str) -> str:
    name = preset or DEFAULT_FOR_DATASET.get(dataset)
    if name is None:
        raise SettingError(
            "preset",
            f": dataset '{dataset}' has no default preset; choose one of {', '.join(PRESETS)}",
        )
    if name not in PRESETS:
        raise SettingError("preset", f" {name}: unknown (expected one of {', '.join(PRESETS)})")
    return name


def resolve(
    stage: str,
    dataset: str,
    given: Mapping[str, Any] | None = None,
    *,
    preset: str | None = None,
    burnin: Mapping[str, Any] | None = None,
) -> RunConfig:
    """The run configuration of ``stage`` on ``dataset``.

    ``given``: flat {setting name: value} of what the user set (config file, command line);
    ``burnin``: for distillation (and each network of xMOD), the saved configuration of
    the run it starts from (``RunConfig.to_dict``;
    a flat record of older versions works too); None: the preset's burn-in configuration
    (a distillation started from another model). Raises SettingError naming the setting."""
    if stage not in STAGES:
        raise SettingError("stage", f" {stage}: expected one of {', '.join(STAGES)}")
    given = {k: v for k, v in (given or {}).items() if v is not None}
    names = setting_names(stage)
    for name in given:
        only = STAGE_ONLY.get(name)
        if name not in names or only not in (None, stage):
            other = only or ("distill" if name in setting_names("distill") else None)
            raise SettingError(
                name,
                f": only for --stage {other}" if other else ": no such setting",
            )
    if "steps" in given and "epochs" in given:
        raise SettingError("steps", " and epochs are exclusive: give one")
    base: dict[str, Any] = {}
    if stage == "burnin":
        name = _preset_name(preset, dataset)
        values = preset_values(name, stage)
    else:
        # from a burn-in: its record (nested by section; older records are flat already);
        # straight from another model (--init): the preset's burn-in configuration
        name = _preset_name(preset or (burnin or {}).get("preset"), dataset)
        base = flatten(burnin) if burnin is not None else _preset_burnin(name, given)
        if burnin is not None:
            _keep_network(given, base)
        runtime = dict(declared(RuntimeConfig))
        values = {k: v for k, v in base.items() if k in names and k not in runtime}
        values = _layer(values, preset_values(name, stage))
    values = _layer(values, given)
    if stage == "burnin":  # distillation keeps its burn-in's size
        values = _encoder_values(name, values, given)
    values = _modality_values(name, values, given, stage)
    values["map_size"] = _map_size(values)
    if burnin is not None and values["map_size"] != _size_or_none(base.get("map_size")):
        raise SettingError(
            "input_size",
            f" {show(values.get('input_size'))}: the burn-in's network norms its tokens over "
            f"{show(base.get('map_size'))} maps (token_norm map); train at its input size",
        )
    values["precision"] = model_precision(
        values.get("precision", PRECISION.default), _planned_device(values.get("device", "auto"))
    )
    sections = {key: build(cls, values) for key, cls in stage_sections(stage).items()}
    sections["model"] = sections["model"].pinned()  # the weights file, by path and sha256
    return RunConfig(stage, dataset, name, **sections)


def _keep_network(given: Mapping[str, Any], burnin: Mapping[str, Any]) -> None:
    """Distillation trains its burn-in's network: a model setting given must equal it."""
    for key in given.keys() & MODEL_DEFAULTS.keys():
        if key in burnin and given[key] != burnin[key]:
            raise SettingError(
                key,
                f" {show(given[key])}: distillation keeps the burn-in's network ({key} = "
                f"{burnin[key]}); drop the option",
            )


def _size_or_none(value: Any) -> tuple[int, int] | None:
    return None if value is None else tuple(value)


def _map_size(values: Mapping[str, Any]) -> tuple[int, int] | None:
    """The map size a ``token_norm map`` network is built for (input size / stride); None
    for the per-token norm. A malformed input size is left to DataConfig to report."""
    if values.get("token_norm", MODEL_DEFAULTS["token_norm"].default) != "map":
        return None
    size = SIZE.coerce(values.get("input_size", DATA_DEFAULTS["input_size"].default))
    if not SIZE.accepts(size):
        return None
    stride = ResNet18Encoder.STRIDE
    return (size[0] // stride, size[1] // stride)


def _planned_device(name: str) -> torch.device:
    """The kind of device a run will use, for choosing its precision (no side effects)."""
    cuda = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if cuda else "cpu")
