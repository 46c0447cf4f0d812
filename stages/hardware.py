"""Where and how tensors are computed, for every stage that runs a network (flow, train,
export): the device, the autocast precision, the processes of a distributed run, and the
settings that choose them (declared once here; the CLI's options are made from them).

``auto`` precision differs by what runs: training and export use bf16 where the hardware
computes it natively (Ampere+ GPUs, AVX512-BF16/AMX CPUs), fp16 on older GPUs and fp32 on
other CPUs; RAFT flow uses bf16 on any GPU and fp32 on CPUs, never fp16, because ptlflow's
all-pairs correlation of 256-d features can exceed fp16's range (65504) and bf16 on a CPU
changes the flow more than it saves time (docs/flow.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from stages.errors import UserError
from stages.settings import TEXT, Setting, choice, ints

PRECISIONS = ("fp32", "bf16", "fp16")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

DEVICE = Setting(
    "auto",
    TEXT,
    "auto, cpu, cuda or cuda:N (auto: this process's GPU if there is one; under torchrun "
    "each rank's local GPU).",
)
PRECISION = Setting(
    "auto",
    choice("auto", *PRECISIONS),
    "Autocast precision (auto: bf16 where the hardware computes it natively, else fp16 on "
    "GPUs, fp32 on CPUs).",
)
WORKERS = Setting(
    None,
    ints(0, optional=True),
    "Worker processes (0: none, the work runs in this process) [default: from the cores].",
    flag="workers",
)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def idle_cores(sample_s: float = 0.5) -> float | None:
    """How many of the machine's cores no process is using right now: the idle share of two
    reads of /proc/stat ``sample_s`` apart, times the core count; None where there is no
    /proc/stat (not Linux)."""

    def idle_and_total() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user..steal

    try:
        idle0, total0 = idle_and_total()
        time.sleep(sample_s)
        idle1, total1 = idle_and_total()
    except (OSError, ValueError, IndexError):
        return None
    share = (idle1 - idle0) / max(total1 - total0, 1)
    return share * (os.cpu_count() or 1)


def cpu_threads() -> int:
    """Threads for a CPU training process: its share of the cores free right now (the idle
    cores over the processes torchrun starts on this machine), at least one.

    OpenMP threads wait for each other at every parallel region, so one more thread than
    there are free cores makes every step wait for the busiest core: two threads were 3-6x
    slower than one on a 2-core machine running another job (docs/training.md), and two are
    about 1.8x faster than one when both cores are free.
    """
    cores = usable_cores()
    idle = idle_cores()
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    free = cores if idle is None else min(cores, int(idle + 0.5))
    return max(1, free // local_processes)


def worker_count(requested: int | None, default: int, most: int) -> int:
    """The worker processes of a ``--workers`` option, the same rule in every command:
    N asks for N, 0 for none (the work runs in this process), None for ``default`` (each
    command's own rule from the cores); never more than ``most`` (e.g. the jobs there are)."""
    return max(0, min(default if requested is None else requested, most))


def die_with_parent(parent: int | None = None) -> None:
    """Make this worker process die with the process that started it, even when that one is
    killed by SIGKILL and cannot clean up (Linux's PR_SET_PDEATHSIG; elsewhere a no-op).
    ``parent``: its pid when known, to catch a parent that died before this call."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def local_rank() -> int:
    """This process's rank on its machine (torchrun's LOCAL_RANK, SLURM's SLURM_LOCALID)."""
    return int(os.environ.get("LOCAL_RANK") or os.environ.get("SLURM_LOCALID") or 0)


def resolve_device(name: str) -> torch.device:
    """``auto``: this process's GPU when there is one, else the CPU; ``cuda``: this
    process's GPU. A CUDA device is made current, so later allocations land on it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine")
        if name == "cuda":
            name = f"cuda:{local_rank() % torch.cuda.device_count()}"
    elif name != "cpu":
        raise UserError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs at full speed here (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def resolve_precision(name: str, device: torch.device, *, cpu_bf16: bool, fp16: bool) -> str:
    """The concrete precision for ``name``; ``auto`` follows the caller's rules: bf16 where
    native (on CPUs only if ``cpu_bf16``), else fp16 on GPUs if ``fp16`` allows it (else
    bf16 there), else fp32."""
    if name not in ("auto", *PRECISIONS):
        raise UserError(f"--precision {name}: expected auto or one of {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if native_bf16(device) or not fp16 else "fp16"
    return "bf16" if cpu_bf16 and native_bf16(device) else "fp32"


def model_precision(name: str, device: torch.device) -> str:
    """The rule of the DIOD model's stages (train, export): bf16 where native, fp16 on
    older GPUs."""
    return resolve_precision(name, device, cpu_bf16=True, fp16=True)


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast at ``precision`` on ``device``'s type; fp32 is no autocast at all."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` job (one process alone by default)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, local_rank())

    def init(self, device: torch.device) -> None:
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's value on every rank."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
