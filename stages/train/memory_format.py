"""The convolutions' memory format of a training run, chosen by timing it on this device.

Neither format wins everywhere (docs/training.md, "Memory format and CPU class"): with
oneDNN's AVX2 fp32 kernels the full-width reference network runs 14-35 % faster in NCHW
("contiguous"), the narrow synth-cpu network about 10 % faster in channels_last on one CPU
and no faster on another, and with bf16 channels_last wins by 1.45-1.9x; tensor cores want
channels_last too. Which one wins depends on the CPU's kernels, the precision, the
network's widths and the map size, so any fixed default costs 15-35 % somewhere.

``auto`` (the default) therefore times what the run will do: forward and backward passes of
a copy of the model on random frames of the run's batch shape, at its precision, in each
format, and keeps the one with the lower median. One pass each was not enough: single
passes of the demo network on a 2-core EPYC varied from 1.2 to 1.8 s, more than the formats
differ there, so the choice flipped between runs. The formats take turns, one untimed round
first, then ``TIMED_ROUNDS``, so a slow spell of the machine hits both. The copies leave the
model's weights, BatchNorm statistics and gradients untouched, and the frames come from a
private generator, so the run itself is unchanged but for the format. Under DDP rank 0's
choice holds on every rank.

The two formats sum in different orders, so the choice must not flip between runs where
the two times are close: the first choice for a (device, ISA cap, torch version, precision,
threads, network, batch shape) is kept in ``$DIOD_CACHE/memory_format.json`` (default
``~/.cache/diod``) and reused, so the same seed and inputs give the same artifact on the
same machine. A checkpoint records the format and a resumed ``auto`` run keeps it; the
summary records it too (pass it with ``--memory-format`` to rerun elsewhere).
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from stages.artifacts import atomic_write_json
from stages.hardware import Distributed, autocast
from stages.machine import cpu_name
from stages.progress import log

AUTO = "auto"
CHANNELS_LAST = "channels_last"
CONTIGUOUS = "contiguous"
MEMORY_FORMATS = (AUTO, CHANNELS_LAST, CONTIGUOUS)
#: timed passes per format, after one untimed pass each
TIMED_ROUNDS = 3


def apply(module: nn.Module, memory_format: str) -> None:
    """Put ``module``'s convolutions in ``memory_format`` (modules that know how to)."""
    convert = getattr(module, "use_channels_last", None)
    if memory_format == CHANNELS_LAST and convert is not None:
        convert()


def _copy_in(model: nn.Module, memory_format: str) -> nn.Module:
    """A training-mode copy of ``model`` in ``memory_format``, to be spent on timing."""
    net = copy.deepcopy(model).train()
    apply(net, memory_format)
    return net


def _pass_seconds(net: nn.Module, frames: torch.Tensor, precision: str) -> float:
    """Seconds of one forward + backward pass of ``net`` (a copy: its gradients and
    BatchNorm statistics are spent)."""
    if frames.device.type == "cuda":
        torch.cuda.synchronize(frames.device)
    tic = time.perf_counter()
    with autocast(frames.device, precision):
        out = net(frames)
        loss = out.masks.float().mean() + (out.recon.float().mean() if out.recon is not None else 0)
    loss.backward()
    if frames.device.type == "cuda":
        torch.cuda.synchronize(frames.device)
    return time.perf_counter() - tic


def cache_path() -> Path:
    return Path(os.environ.get("DIOD_CACHE", "~/.cache/diod")).expanduser() / "memory_format.json"


def _situation(
    model: nn.Module, frames_shape: tuple[int, ...], device: torch.device, precision: str
) -> str:
    """What the timing depends on, as the key of its record."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return json.dumps(
        {
            "device": name,
            "isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA"),
            "torch": torch.__version__,
            "precision": precision,
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "frames": list(frames_shape),
            "model": model.config.to_dict(),
        },
        sort_keys=True,
    )


def _timed_choice(
    model: nn.Module, frames_shape: tuple[int, ...], device: torch.device, precision: str
) -> str:
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(frames_shape, generator=generator).to(device)
    nets = {fmt: _copy_in(model, fmt) for fmt in (CONTIGUOUS, CHANNELS_LAST)}
    times: dict[str, list[float]] = {fmt: [] for fmt in nets}
    for round_ in range(1 + TIMED_ROUNDS):
        for fmt, net in nets.items():
            seconds = _pass_seconds(net, frames, precision)
            if round_:  # the first round is untimed: first-call set-up costs
                times[fmt].append(seconds)
    seconds = {fmt: statistics.median(t) for fmt, t in times.items()}
    chosen = min(seconds, key=seconds.get)
    log.info(
        "memory format %s: a forward + backward pass took %.2f s in %s, %.2f s in %s "
        "(median of %d; --memory-format to fix it)",
        chosen,
        seconds[CONTIGUOUS],
        CONTIGUOUS,
        seconds[CHANNELS_LAST],
        CHANNELS_LAST,
        TIMED_ROUNDS,
    )
    return chosen


def choose(
    memory_format: str,
    model: nn.Module,
    frames_shape: tuple[int, ...],
    device: torch.device,
    precision: str,
    ranks: Distributed,
) -> str:
    """The concrete format for ``memory_format`` (``auto``: this machine's recorded choice
    for the situation, else the faster one, timed and recorded)."""
    if memory_format != AUTO:
        return memory_format
    chosen = None
    if ranks.is_main:
        path = cache_path()
        key = _situation(model, frames_shape, device, precision)
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        chosen = known.get(key)
        if chosen in (CHANNELS_LAST, CONTIGUOUS):
            log.info("memory format %s: this machine's timed choice (%s)", chosen, path)
        else:
            chosen = _timed_choice(model, frames_shape, device, precision)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(path, {**known, key: chosen})
            except OSError as err:  # a read-only home: the run goes on, unrecorded
                log.warning("could not record the memory format in %s: %s", path, err)
    return ranks.broadcast(chosen)
