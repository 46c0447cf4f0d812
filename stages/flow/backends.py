"""Optical-flow backends behind one small interface: every ptlflow model, OpenCV DIS, Farneback
(and ``gt``, the dataset's own ground truth, which estimates nothing: ``groundtruth.py``).

The stage only ever sees ``FlowBackend.predict``: (N, H, W, 3) uint8 RGB frames in, (N, 2, H, W)
float32 flow (dx, dy) in pixels out. Everything that changes the numbers a backend produces
(model, weights and their sha256, iterations, precision, fixed OpenCV settings) is gathered
in a ``BackendSpec`` *before* any model is built, so the artifact id can be computed (to
reuse, resume or finalize an artifact) without paying for construction.

ptlflow is imported lazily, here only: it takes seconds to import and pulls in timm and
Lightning, which nothing else in the pipeline needs.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F

from stages.artifacts import file_sha256
from stages.errors import UserError
from stages.hardware import autocast, resolve_device, resolve_precision
from stages.progress import log

OPENCV_MODELS = ("opencv-dis", "opencv-farneback")
#: ``--model gt``: the dataset's ground-truth flow copied into the artifact
GROUND_TRUTH = "gt"
NO_CHECKPOINT = "none"

# Fixed OpenCV settings; they are part of the artifact's parameters. DIS starts from the
# "medium" preset but refines down to full resolution (finest scale 0) with small dense
# patches: the preset's half-resolution flow smears objects a few pixels wide, which halved
# the recall of motion masks on synth (docs/masks.md), for a higher cost per pair
# (docs/flow.md). Farneback uses OpenCV's documented example values
# except 5 pyramid levels instead of 3, so displacements of tens of pixels stay in reach.
DIS_SETTINGS = {"preset": "medium", "finest_scale": 0, "patch_size": 6, "patch_stride": 2}
FARNEBACK_SETTINGS = {
    "pyr_scale": 0.5,
    "levels": 5,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
}


class FlowBackend(ABC):
    """Computes flow for batches of frame pairs on one device."""

    name: str
    device: torch.device

    @abstractmethod
    def predict(self, batch_a: torch.Tensor, batch_b: torch.Tensor) -> torch.Tensor:
        """Flow a -> b of (N, H, W, 3) uint8 RGB frames: (N, 2, H, W) float32, channels (dx, dy)
        in pixels, on ``self.device``."""


# -- OpenCV ---------------------------------------------------------------------------------
class OpenCVBackend(FlowBackend):
    """Classical flow on the CPU, no weights: what the demo and CI use."""

    def __init__(self, name: str):
        import cv2

        self.name = name
        self.device = torch.device("cpu")
        self._cv2 = cv2
        if name == "opencv-dis":
            preset = getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{DIS_SETTINGS['preset'].upper()}")
            self._dis = cv2.DISOpticalFlow_create(preset)
            self._dis.setFinestScale(DIS_SETTINGS["finest_scale"])
            self._dis.setPatchSize(DIS_SETTINGS["patch_size"])
            self._dis.setPatchStride(DIS_SETTINGS["patch_stride"])

    def _pair(self, gray_a: np.ndarray, gray_b: np.ndarray) -> np.ndarray:
        if self.name == "opencv-dis":
            return self._dis.calc(gray_a, gray_b, None)
        s = FARNEBACK_SETTINGS
        return self._cv2.calcOpticalFlowFarneback(
            gray_a, gray_b, None, s["pyr_scale"], s["levels"], s["winsize"],
            s["iterations"], s["poly_n"], s["poly_sigma"], 0,
        )  # fmt: skip

    def predict(self, batch_a: torch.Tensor, batch_b: torch.Tensor) -> torch.Tensor:
        cv2 = self._cv2
        a, b = batch_a.numpy(), batch_b.numpy()
        n, h, w, _ = a.shape
        out = np.empty((n, 2, h, w), np.float32)
        for i in range(n):  # OpenCV computes one pair per call; each call is vectorised C++
            flow = self._pair(
                cv2.cvtColor(a[i], cv2.COLOR_RGB2GRAY), cv2.cvtColor(b[i], cv2.COLOR_RGB2GRAY)
            )
            out[i] = flow.transpose(2, 0, 1)
        return torch.from_numpy(out)


# -- ptlflow --------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def import_ptlflow() -> ModuleType:
    """ptlflow, imported once. Its model modules print notices at import (optional CUDA
    kernels or xFormers missing, for models we may never use); they go to the debug log
    instead of the terminal, where they would break the one-line error contract."""
    notices = io.StringIO()
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(notices),
        contextlib.redirect_stderr(notices),
    ):
        warnings.simplefilter("ignore", FutureWarning)
        import ptlflow
    for line in notices.getvalue().splitlines():
        log.debug("ptlflow import: %s", line)
    return ptlflow


def model_names() -> list[str]:
    """Every valid ``--model``: the OpenCV backends, the ground truth, then ptlflow's
    registry."""
    return [*OPENCV_MODELS, GROUND_TRUTH, *import_ptlflow().get_model_names()]


def _model_args(name: str):
    """ptlflow's own default constructor arguments for a model (a jsonargparse Namespace)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(import_ptlflow().get_model_reference(name), "model")
    return parser.parse_args([])


def pretrained_checkpoints(name: str) -> dict[str, str]:
    """ptlflow's checkpoint names for a model, mapped to their download URLs."""
    return dict(getattr(import_ptlflow().get_model_reference(name), "pretrained_checkpoints", {}))


def resolve_checkpoint(model: str, ckpt: str) -> tuple[str, Path]:
    """(label, local file) for ``--ckpt``: a file (labelled by its absolute path), or one of
    ptlflow's checkpoint names, downloaded once into torch hub's cache (where ptlflow itself
    caches it)."""
    path = Path(ckpt).expanduser()
    if path.is_file():
        return str(path.resolve()), path.resolve()
    urls = pretrained_checkpoints(model)
    if ckpt not in urls:
        names = ", ".join(sorted(urls)) or "none published"
        raise UserError(
            f"--ckpt {ckpt}: neither a file nor a checkpoint name of {model} "
            f"(names: {names}; or '{NO_CHECKPOINT}' for random weights)"
        )
    url = urls[ckpt]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if cached.is_file():
        return ckpt, cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(cached.name)
    try:
        torch.hub.download_url_to_file(url, str(cached), match.group(1) if match else None)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash a RuntimeError
        raise UserError(
            f"--ckpt {ckpt}: could not download {url} ({exc}); download it elsewhere and pass "
            "the file with --ckpt PATH"
        ) from None
    return ckpt, cached


class PtlflowBackend(FlowBackend):
    """Any ptlflow model, fed the way ptlflow feeds its models.

    ptlflow models take ``{"images": (N, 2, 3, H, W)}`` float in [0, 1] with channels in BGR
    order (ptlflow reads frames with ``cv2.imread`` and each model's ``forward`` flips to RGB
    itself when its weights expect RGB), and pad to their output stride internally, returning
    flow at the input size. See docs/flow.md for where this was checked.

    Models with a RAFT-style correlation pyramid of L levels need every side to be at least
    stride * 2^L (128 px for RAFT): below that the coarsest level is one pixel wide, its
    bilinear lookup divides by zero and the whole flow is NaN. Smaller frames (the synthetic
    dataset's 96x320) are therefore padded by edge replication to that size and the flow is
    cropped back, which leaves the flow in the original pixel coordinates.
    """

    def __init__(self, spec: BackendSpec):
        ptlflow = import_ptlflow()
        self.name = spec.model
        self.device = torch.device(spec.device)
        args = _model_args(spec.model)
        if spec.iters is not None:
            args.model.iters = spec.iters
        with torch.random.fork_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # jsonargparse, inside ptlflow
            torch.manual_seed(0)  # random weights (no checkpoint) are the same every run
            model = ptlflow.get_model(spec.model, args=args)
        if spec.checkpoint_path is not None:
            try:
                model = ptlflow.restore_model(model, str(spec.checkpoint_path))
            except (KeyError, RuntimeError, ValueError, OSError) as exc:
                raise UserError(
                    f"--ckpt {spec.checkpoint}: not a ptlflow checkpoint of {spec.model} "
                    f"(expected a file with a 'state_dict' for this model: {exc})"
                ) from None
        model = model.eval().to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.model = model
        levels = getattr(model, "corr_levels", None)
        self.min_side = model.output_stride * 2**levels if isinstance(levels, int) else 0
        self.precision = spec.precision or "fp32"

    @torch.inference_mode()
    def predict(self, batch_a: torch.Tensor, batch_b: torch.Tensor) -> torch.Tensor:
        n, h, w, _ = batch_a.shape
        pairs = np.stack([batch_a.numpy(), batch_b.numpy()], axis=1)  # numpy: see stage.py
        pairs = torch.from_numpy(pairs).to(self.device, non_blocking=True)
        # (N, 2, H, W, 3) RGB uint8 -> (N, 2, 3, H, W) BGR in [0, 1]
        images = pairs.permute(0, 1, 4, 2, 3).flip(2).float().div_(255.0)
        pad_h, pad_w = max(0, self.min_side - h), max(0, self.min_side - w)
        if pad_h or pad_w:
            padded = F.pad(images.flatten(0, 1), (0, pad_w, 0, pad_h), mode="replicate")
            images = padded.unflatten(0, (n, 2))
        with autocast(self.device, self.precision):
            flows = self.model({"images": images})["flows"][:, 0, :, :h, :w].float()
        if not torch.isfinite(flows).all():
            raise UserError(
                f"--model {self.name}: non-finite flow for {h}x{w} frames "
                "(a wrong checkpoint, or fp16 overflow: try --precision fp32)"
            )
        return flows


# -- choosing one ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BackendSpec:
    """A fully resolved backend: what it computes (``identity``) and where (``device``)."""

    model: str
    checkpoint: str | None = None
    checkpoint_path: Path | None = None
    checkpoint_sha256: str | None = None
    iters: int | None = None
    precision: str | None = None
    device: str = "cpu"
    settings: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """Everything that changes the flow values (the device does not, beyond rounding)."""
        return {
            "model": self.model,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "iters": self.iters,
            "precision": self.precision,
            "settings": dict(self.settings),
        }

    def build(self) -> FlowBackend:
        if self.model == GROUND_TRUTH:
            raise ValueError("the ground truth is copied (flow.groundtruth), not estimated")
        if self.model in OPENCV_MODELS:
            return OpenCVBackend(self.model)
        return PtlflowBackend(self)


def resolve_backend(
    model: str,
    ckpt: str | None,
    device: str = "auto",
    precision: str = "auto",
    iters: int | None = None,
) -> BackendSpec:
    """Check a backend request and pin down everything it depends on, without building it.

    ``ckpt``: a ptlflow checkpoint name (e.g. ``things``, downloaded once), a local file, or
    None / ``none`` for random initialisation (tests and benchmarks).
    """
    if model in (*OPENCV_MODELS, GROUND_TRUTH):
        if iters is not None:
            raise UserError(f"--iters: {model} has no iterations to set")
        if model == GROUND_TRUTH:
            return BackendSpec(model=model)
        settings = DIS_SETTINGS if model == "opencv-dis" else FARNEBACK_SETTINGS
        return BackendSpec(model=model, settings=dict(settings))
    names = model_names()
    if model not in names:
        raise UserError(
            f"--model {model}: unknown flow model (expected one of: {', '.join(names)})"
        )
    default_iters = getattr(_model_args(model).model, "iters", None)
    if iters is not None and default_iters is None:
        raise UserError(f"--iters: ptlflow model {model} has no 'iters' setting")
    if iters is not None and iters < 1:
        raise UserError(f"--iters {iters}: expected a positive number of iterations")
    where = resolve_device(device)
    label, path = (None, None) if ckpt in (None, NO_CHECKPOINT) else resolve_checkpoint(model, ckpt)
    return BackendSpec(
        model=model,
        checkpoint=label,
        checkpoint_path=path,
        checkpoint_sha256=None if path is None else file_sha256(path),
        iters=iters if iters is not None else default_iters,
        precision=resolve_precision(precision, where, cpu_bf16=False, fp16=False),
        device=str(where),
    )


def make_backend(
    name: str,
    ckpt: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    iters: int | None = None,
) -> FlowBackend:
    """A ready backend by name (the one-call form of ``resolve_backend(...).build()``)."""
    return resolve_backend(name, ckpt, device, precision, iters).build()
