"""Evaluation protocols, per dataset: ours (``diod``) and the authors' (``paper``).

A protocol says how the model is run to make the predictions (``ExportSettings``, applied
by ``diod export --protocol``) and how they are scored (``Protocol``, applied by ``diod
eval --protocol``): the GT preparation, the ARI rule and samples, the scored region and any
extra scores. ``diod`` is docs/eval.md's protocol; ``paper`` is what the authors' scripts do
(CEA-LIST/DIOD ``evalPD_*``, ``evalKITTI_*`` and their data loaders), so that their tables
can be reproduced; for a dataset they did not script it is the same treatment applied at the
options' granularity. docs/eval.md ("Protocols") says where and why the two differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from stages import groundtruth, metrics, protocol_metrics
from stages.datasets import Video
from stages.errors import UserError

PROTOCOLS = ("diod", "paper")
BATCHNORM_MODES = ("eval", "train")
#: TRI-PD: the authors run the model on 5-frame clips, one per forward pass, and score the
#: ARI on the same clips (40 per 200-frame video)
TRIPD_CLIP = 5
#: KITTI: single images, 8 per forward pass (their loader's batch)
KITTI_BATCH = 8
#: TRI-PD: their loader takes these cameras of each test scene, and its first 200 frames
TRIPD_CAMERAS = ("camera_01", "camera_05", "camera_06", "camera_07", "camera_08", "camera_09")
TRIPD_FRAMES = 200


def every_video(_video: Video) -> bool:
    """Every video of the split is scored."""
    return True


def tripd_camera(video: Video) -> bool:
    """Only the cameras the authors' TRI-PD loader reads are scored."""
    return video.extra["dir"].name in TRIPD_CAMERAS


@dataclass(frozen=True)
class ExportSettings:
    """How the model runs over the videos. ``batchnorm`` ``train`` normalises with each
    forward pass's batch statistics (the authors never call ``model.eval()``), which makes
    ``batch_size`` part of the result. None leaves a setting to the export's own default
    (``clip_length``: the training T; ``precision``: ``stages.hardware.PRECISION``)."""

    which: str
    batchnorm: str
    clip_length: int | None
    batch_size: int
    precision: str | None

    def deviations(self, params: dict[str, Any], protocol: str) -> list[str]:
        """How an export artifact's params differ from these settings, one phrase per
        setting naming the export option (empty when it matches)."""
        found = {
            "which": params.get("which"),
            "batchnorm": params.get("batchnorm", "eval"),
            "clip_length": params.get("clip_length"),
            "batch_size": params.get("batch_size"),
            "precision": params.get("precision"),
        }
        wanted = {
            "which": self.which,
            "batchnorm": self.batchnorm,
            "clip_length": self.clip_length,
            "batch_size": self.batch_size if self.batchnorm == "train" else None,
            "precision": self.precision,
        }
        if found["which"] == "model":  # a burn-in has one network: nothing to choose
            del found["which"], wanted["which"]
        return [
            f"--{key.replace('_', '-')} {found[key]} ({protocol}: {wanted[key]})"
            for key in wanted
            if wanted[key] is not None and found[key] != wanted[key]
        ]


@dataclass(frozen=True)
class Protocol:
    """How one dataset's predictions are made and scored under one protocol."""

    name: str
    export: ExportSettings
    #: GT at the prediction resolution (``stages.groundtruth``)
    ground_truth: groundtruth.Prepare
    #: per-sample ARIs and which samples count (``stages.metrics.AriRule``)
    ari: metrics.AriRule
    #: what the eval artifact's params record of the rule (its id changes with it)
    params: dict[str, Any]
    #: fixed ARI samples (granularity, clip length); None: ``--granularity``/``--clip-len``
    sample: tuple[str, int | None] | None = None
    #: score only the model's input region (the map rows standing for a cropped top are
    #: dropped), as the authors score the crop the model saw
    input_region: bool = False
    #: the predictions must be a model's, run as ``export`` says: an export artifact (not
    #: motion masks) with segment confidences; its settings are checked (a warning names
    #: each difference)
    model_run: bool = False
    #: add the MOVi literature's video-level fg-ARI and mBO
    video_scores: bool = False
    #: which of the split's videos are scored
    videos: Callable[[Video], bool] = every_video
    #: only a video's first frames are scored (None: all)
    frames: int | None = None


DIOD = Protocol(
    name="diod",
    export=ExportSettings(
        which="teacher",
        batchnorm="eval",
        clip_length=None,
        batch_size=4,
        precision=None,
    ),
    ground_truth=groundtruth.centred_gt,
    ari=metrics.sample_ari,
    params={"min_objects": metrics.MIN_OBJECTS},
)

_PAPER = Protocol(
    name="paper",
    export=ExportSettings(
        which="student", batchnorm="train", clip_length=None, batch_size=1, precision="fp32"
    ),
    ground_truth=groundtruth.floor_gt,
    ari=protocol_metrics.paper_ari,
    params={"min_top_id": protocol_metrics.MIN_TOP_ID, "ari_eps": protocol_metrics.ARI_EPS},
    model_run=True,
)

#: the authors' protocol of the datasets they scored; any other dataset gets ``_PAPER``
PAPER = {
    "tripd": replace(
        _PAPER,
        export=replace(_PAPER.export, clip_length=TRIPD_CLIP, batch_size=1),
        ground_truth=groundtruth.tripd_paper_gt,
        sample=("clip", TRIPD_CLIP),
        input_region=True,
        videos=tripd_camera,
        frames=TRIPD_FRAMES,
    ),
    "kitti": replace(
        _PAPER,
        export=replace(_PAPER.export, clip_length=1, batch_size=KITTI_BATCH),
        ground_truth=groundtruth.kitti_raw_gt,
        sample=("frame", None),
    ),
    "movi": replace(_PAPER, video_scores=True),
}


def protocol(name: str, dataset: str) -> Protocol:
    """The protocol ``name`` for ``dataset``."""
    if name not in PROTOCOLS:
        raise UserError(f"--protocol {name}: expected one of {', '.join(PROTOCOLS)}")
    return DIOD if name == "diod" else PAPER.get(dataset, _PAPER)
