"""The machine in a few lines: CPU class, free cores, GPU, and what `make demo` costs here.

The demo's time depends on the CPU class more than on anything else: where AVX512-BF16 or
AMX make bf16 native, training runs in bf16 autocast; elsewhere (AVX2-only laptops and
servers, or with ``ONEDNN_MAX_CPU_ISA`` capping the ISA) it runs in fp32, its steps 1.6x
(against AVX512-BF16) to 3x (against AMX) slower. The figures below are measured
(docs/results.md), on 2 free cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from stages.hardware import idle_cores, native_bf16, usable_cores

#: `make demo` end to end on 2 free cores, minutes, per CPU class (docs/results.md "The demo
#: today"): fp32 with AVX2 kernels (ONEDNN_MAX_CPU_ISA=AVX2), seeds 0, 11, 12, 12 min 47 s to
#: 13 min 6 s on an Intel Xeon, 12.6-13.3 min on an AMD EPYC; native bf16 7 min 4 s on the
#: Xeon (AMX, seed 0, dataset already generated: generation takes 17 s) and about 9 min on
#: the EPYC (AVX512-BF16, by subtraction). Each class says the slower machine's time.
DEMO_MINUTES = {"bf16": 9.0, "fp32": 13.0}

#: One distillation step of the CPU presets on 2 free cores, seconds, per CPU class: the flat
#: demo's 400 steps took 343-357 s under the AVX2 cap on the Xeon, 185 s with its AMX; the
#: EPYC's AVX512-BF16 is taken as 9/7 of that (the demos' ratio above). A demo whose preset
#: distils longer costs its extra steps at this rate on top of the flat demo; the street's
#: data, flow and masks add under half a minute (with AMX: 21 + 47 + 43 s for street seed 151
#: against 17 + 46 + 25 s for the flat demo's seed 0), left out.
DISTILL_STEP_SECONDS = {"bf16": 0.6, "fp32": 357 / 400}


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def cpu_class() -> str:
    """``bf16`` where the CPU computes bf16 natively, else ``fp32``."""
    return "bf16" if native_bf16(torch.device("cpu")) else "fp32"


def demo_minutes(kind: str, extra_distill_steps: int = 0) -> float:
    """Expected minutes of a demo on 2 free cores of CPU class ``kind``: the flat demo's, plus
    ``extra_distill_steps`` distillation steps more than its preset's."""
    return DEMO_MINUTES[kind] + extra_distill_steps * DISTILL_STEP_SECONDS[kind] / 60


def describe(demo: str = "make demo", extra_distill_steps: int = 0) -> list[str]:
    """Lines for `diod hardware` (and the start of `make demo`); ``demo`` names the command
    whose time the last line gives, ``extra_distill_steps`` is what it distils beyond the flat
    demo."""
    isa = torch.backends.cpu.get_cpu_capability()
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA")
    kind = cpu_class()
    cores, idle = usable_cores(), idle_cores()
    lines = [
        f"CPU: {cpu_name()}, {cores} usable cores"
        + ("" if idle is None else f" ({min(idle, cores):.1f} idle now)"),
        f"CPU class: {kind} ("
        + (
            "bf16 autocast runs natively"
            if kind == "bf16"
            else f"{isa} without native bf16: training runs in fp32"
        )
        + (f"; ONEDNN_MAX_CPU_ISA={capped}" if capped else "")
        + ")",
        "GPU: "
        + (
            ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            if torch.cuda.is_available()
            else "none"
        ),
    ]
    minutes = {k: demo_minutes(k, extra_distill_steps) for k in DEMO_MINUTES}
    if idle is not None and idle < 1.5:
        note = "; another job holds a core, so training takes one thread: expect up to 2x that"
    else:
        note = ""
    lines.append(
        f"{demo}: about {minutes[kind]:.0f} min on this CPU class with 2 free cores"
        f" ({', '.join(f'{k}: {v:.0f} min' for k, v in minutes.items())}){note}"
    )
    return lines
