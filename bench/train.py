"""Training throughput and peak memory per preset: forward + backward + loss + optimizer
step, fed by the real data loader (synth clips decoded from PNG, masks from Zarr).

Each case runs in its own process (so its peak RSS is its own) on a small synth dataset
generated at the case's input size, with masks imported from the GT moving objects. The
REF cases use the reference's architecture (ResNet-18 at width 1, ConvGRU 2x64, 45 slots,
T=5) and batch as the reference figures in docs/training.md, which it prints beside ours.

    .venv/bin/python bench/train.py                      # synth-cpu, ref-96x320, ref-128x416
    .venv/bin/python bench/train.py --cases ref-368x1248 --steps 3
    .venv/bin/python bench/train.py --cases movi,tripd-b1 --steps 3
    .venv/bin/python bench/train.py --device cuda --cases synth-cpu,kitti,tripd,movi   # GPU
    .venv/bin/python bench/train.py --set memory_format=contiguous --set threads=1   # any setting
    .venv/bin/python bench/train.py --cases synth-cpu,synth-cpu-dinov2,ref-dinov2-84x308
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python bench/train.py --precision fp32    # an AVX2 CPU

The teacher-student step (``--stage distill``: the EMA teacher's labelling pass, the strong
view, eq. 5 and the EMA update) starts, as the burn-in cases do, from a fresh model.

``--reference PATH`` (a checkout of CEA-LIST/DIOD; see bench/reference.py) times the
authors' step too, in the same run, on the same clips, for every ref-* case, and prints
our step's ratio to theirs:

    PYTHONPATH=DIR .venv/bin/python bench/train.py --precision fp32 --stage distill \
        --reference ../DIOD --cases ref-96x320 --set memory_format=contiguous

Timings on a shared machine are noisy: check `uptime` first and compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    # name: (preset, input HxW, batch, overrides of the preset)
    "synth-cpu": ("synth-cpu", None, None, {}),
    "ref-96x320": ("kitti", (96, 320), 2, {}),
    "ref-128x416": ("kitti", (128, 416), 2, {}),
    "ref-368x1248": ("kitti", (368, 1248), 1, {}),
    # the GPU presets as shipped (batch 8); on a CPU only movi fits in memory at batch 8
    "kitti": ("kitti", None, None, {}),
    "tripd": ("tripd", None, None, {}),
    "movi": ("movi", None, None, {}),
    "tripd-b1": ("tripd", None, 1, {}),
    # DIOD*: the frozen DINOv2 ViT-S/14 (random weights: the speed is the same), at the
    # preset's DINOv2 size (84x308) and with the reference architecture around it
    "synth-cpu-dinov2": ("synth-cpu", None, None, {"encoder": "dinov2-vits14"}),
    "ref-dinov2-84x308": ("kitti", (84, 308), 2, {"encoder": "dinov2-vits14"}),
}
# The reference implementation on 2 Zen 4 cores (docs/training.md): burn-in step (s), peak RSS (GiB)
REF = {"ref-96x320": (9.9, 3.1), "ref-128x416": (18.7, 3.7), "ref-368x1248": (97.0, 12.3)}
DEFAULT_CASES = ("synth-cpu", "ref-96x320", "ref-128x416")


def _dataset(workdir: Path, size: tuple[int, int], frames: int):
    """A small synth dataset at ``size`` and a masks artifact of its GT moving objects."""
    import numpy as np

    from stages.artifacts import ArtifactStore
    from stages.datasets import open_dataset
    from stages.datasets.imageio import write_png
    from stages.masks.stage import MasksConfig, compute_masks
    from stages.synthgen import SynthConfig, generate

    root = generate(
        workdir / "synth",
        SynthConfig(
            seed=0, train_videos=3, val_videos=0, frames=frames, height=size[0], width=size[1]
        ),
    )
    ds = open_dataset("synth", root)
    for video in ds.videos("train"):
        moving = sorted(ds.moving_ids(video))
        out = video.extra["dir"] / "motion"
        out.mkdir()
        for i, name in enumerate(video.frames):
            gt = ds.instances(video, i)
            write_png(out / f"{name}.png", np.where(np.isin(gt, moving), gt, 0).astype(np.uint16))
    store = ArtifactStore(workdir / "runs")
    return root, compute_masks(
        store, MasksConfig(dataset="synth", root=str(root), dataset_masks=True, workers=1)
    )


def _objective(stage: str, config, model):
    from stages.distill.ema import EmaTeacher
    from stages.train.burnin import BurninObjective
    from stages.train.distill import DistillObjective

    if stage == "burnin":
        return BurninObjective(config.losses)
    return DistillObjective(
        teacher=EmaTeacher(model, keep_rate=config.distill.ema),
        settings=config.distill,
        losses=config.losses,
    )


def _config(name: str, stage: str, device: str, precision: str, settings: dict):
    from stages.train.config import resolve

    preset, size, batch, overrides = CASES[name]
    given = dict(
        overrides, **settings, input_size=size, batch_size=batch, device=device, precision=precision
    )
    return resolve(stage, "synth", given, preset=preset)


def run_case(
    name: str, stage: str, steps: int, device: str, precision: str, workers: int, settings: dict
) -> dict:
    import torch

    from stages.hardware import Distributed
    from stages.model import DIOD
    from stages.train.data import Augment, ClipBatches, ClipDataset
    from stages.train.loop import Trainer, make_loader, to_device

    config = _config(name, stage, device, precision, settings)
    size, batch, t = config.data.input_size, config.loop.batch_size, config.data.clip_length
    with tempfile.TemporaryDirectory() as tmp:
        root, masks = _dataset(Path(tmp), size, frames=t + 3)
        data = ClipDataset(
            "synth", root, masks, "train", t, size, (size[0] // 4, size[1] // 4), Augment(), 0
        )
        torch.manual_seed(0)
        model = DIOD(config.model)
        trainer = Trainer.build(
            model,
            _objective(stage, config, model),
            config.loop,
            config.runtime,
            Distributed(),
            frames_shape=(batch, t, 3, *size),
        )
        loader = make_loader(
            data, ClipBatches(len(data), batch, 0, total_steps=steps + 2), workers, trainer.device
        )
        times = []
        tic = time.perf_counter()
        for step, batch_cpu in enumerate(loader):
            trainer.step(to_device(batch_cpu, trainer.device), step)
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            times.append(now - tic)
            tic = now
        encoder_s = _encoder_time(model, batch_cpu, trainer, steps)
    return {
        **_case(name, config),
        "width": config.model.encoder_width
        if config.model.encoder == "resnet18"
        else config.model.encoder.removeprefix("dinov2-"),
        "device": str(trainer.device),
        "precision": trainer.precision,
        **_step_figures(times, batch, t),
        "encoder_s": encoder_s,
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30
        if trainer.device.type == "cuda"
        else None,
        "threads": torch.get_num_threads(),
        "memory_format": trainer.memory_format,
    }


def run_reference(name: str, stage: str, steps: int, code: str, anomaly: bool) -> dict:
    """The authors' step (bench/reference.py) at the case's size and batch, on fp32 CPU."""
    import torch
    from reference import time_step

    from stages.train.data import Augment, ClipDataset

    config = _config(name, stage, "cpu", "fp32", {})
    size, batch, t = config.data.input_size, config.loop.batch_size, config.data.clip_length
    with tempfile.TemporaryDirectory() as tmp:
        root, masks = _dataset(Path(tmp), size, frames=t + 3)
        # their loader hands over full-size masks and downsamples them in the step
        clips = ClipDataset("synth", root, masks, "train", t, size, size, Augment(), 0)
        times = time_step(Path(code), stage, clips, size, batch, steps + 2, anomaly)
    return {
        **_case(name, config),
        "width": 1.0,
        "device": "cpu",
        "precision": "fp32",
        **_step_figures(times, batch, t),
        "encoder_s": float("nan"),
        "peak_gpu_gib": None,
        "threads": torch.get_num_threads(),
    }


def _case(name: str, config) -> dict:
    """The columns that say what was timed: the case, its input, batch, clip and slots."""
    size = config.data.input_size
    return {
        "case": name,
        "input": f"{size[0]}x{size[1]}",
        "batch": config.loop.batch_size,
        "T": config.data.clip_length,
        "K": config.model.num_slots,
    }


def _step_figures(times: list[float], batch: int, frames: int) -> dict:
    step_s = statistics.median(times[2:])  # after 2 warm-up steps
    return {
        "step_s": step_s,
        "min_step_s": min(times[2:]),
        "clips_per_s": batch / step_s,
        "frames_per_s": batch * frames / step_s,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def _encoder_time(model, batch_cpu, trainer, repeats: int) -> float:
    """Median time of the encoder's forward alone on one batch's frames (normalised, no
    gradients, the run's precision): all a frozen DINOv2 costs in a step, since nothing
    flows back through it; for the ResNet, its forward without its backward."""
    import torch

    from stages.hardware import autocast
    from stages.train.loop import to_device

    frames = to_device(batch_cpu, trainer.device)["frames"].flatten(0, 1)
    x = (frames - model.input_mean) / model.input_std
    if model.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.no_grad(), autocast(trainer.device, trainer.precision):
        for _ in range(repeats + 1):
            tic = time.perf_counter()
            model.encoder(x)
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - tic)
    return statistics.median(times[1:])


def _setting(item: str) -> tuple[str, object]:
    name, _, text = item.partition("=")
    try:
        return name, json.loads(text)
    except json.JSONDecodeError:
        return name, text


def _run(args: argparse.Namespace, name: str, reference: bool) -> dict:
    """One case in its own process (its own peak RSS): ours, or the authors' step."""
    cmd = [
        sys.executable,
        __file__,
        "--one-reference" if reference else "--one",
        name,
        f"--stage={args.stage}",
        f"--steps={args.steps}",
        f"--device={args.device}",
        f"--precision={args.precision}",
        f"--workers={args.workers}",
        *[f"--set={item}" for item in args.set],
        *(
            [f"--reference={args.reference}", f"--reference-anomaly={args.reference_anomaly}"]
            if reference
            else []
        ),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        # a negative code is a signal: a native crash leaves stderr empty
        sys.exit(
            f"case {name} ({'authors' if reference else 'ours'}) failed with exit code "
            f"{proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases", default=",".join(DEFAULT_CASES), help=f"comma-separated, of {', '.join(CASES)}"
    )
    parser.add_argument(
        "--stage", default="burnin", choices=["burnin", "distill"], help="which step is timed"
    )
    parser.add_argument(
        "--steps", type=int, default=5, help="timed steps per case (after 2 warm-up steps)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--workers", type=int, default=1, help="data-loader processes")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a training setting for every case, as `resolve` takes it (e.g. memory_format=contiguous, "
        "threads=1); VALUE is read as JSON, else as a string",
    )
    parser.add_argument(
        "--reference",
        metavar="PATH",
        help="a CEA-LIST/DIOD checkout: also time the authors' step (fp32, CPU) on every ref-* case",
    )
    parser.add_argument(
        "--reference-anomaly",
        default="on",
        choices=["on", "off"],
        help="their torch.autograd.set_detect_anomaly(True): on as released, or off",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--one-reference", help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = dict(_setting(item) for item in args.set)
    if args.one:
        print(
            json.dumps(
                run_case(
                    args.one,
                    args.stage,
                    args.steps,
                    args.device,
                    args.precision,
                    args.workers,
                    settings,
                )
            )
        )
        return
    if args.one_reference:
        anomaly = args.reference_anomaly == "on"
        figures = run_reference(args.one_reference, args.stage, args.steps, args.reference, anomaly)
        print(json.dumps(figures))
        return
    if settings:
        print(f"settings: {settings}")
    load = os.getloadavg()
    print(
        f"{args.stage} step; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} cores"
    )
    header = f"{'case':17} {'code':7} {'input':>9} {'B':>2} {'T':>2} {'K':>3} {'width':>5} {'prec':>5} {'step s':>7} {'enc fwd':>7} {'clips/s':>8} {'frames/s':>8} {'RSS GiB':>7} {'REF s':>6} {'x REF':>6}"
    print(header)
    for name in args.cases.split(","):
        if name not in CASES:
            sys.exit(f"--cases: unknown case {name!r} (expected {', '.join(CASES)})")
        ours = _run(args, name, reference=False)
        rows = [("ours", ours)]
        # REF: the authors' step timed here in this run, else their burn-in figure of the docs
        ref_s = REF.get(name, (None, None))[0] if args.stage == "burnin" else None
        if args.reference and name.startswith("ref-"):
            theirs = _run(args, name, reference=True)
            rows.append(("authors", theirs))
            ref_s = theirs["step_s"]
        for code, r in rows:
            ratio = f"{r['step_s'] / ref_s:6.2f}" if ref_s and r["device"] == "cpu" else "     -"
            print(
                f"{name:17} {code:7} {r['input']:>9} {r['batch']:>2} {r['T']:>2} {r['K']:>3} {r['width']:>5} {r['precision']:>5} "
                f"{r['step_s']:7.2f} {r['encoder_s']:7.2f} {r['clips_per_s']:8.2f} {r['frames_per_s']:8.1f} {r['peak_rss_gib']:7.2f} "
                f"{(f'{ref_s:6.1f}' if ref_s else '     -')} {ratio}",
                flush=True,
            )
            if r["peak_gpu_gib"] is not None:
                print(f"{'':17} peak GPU memory {r['peak_gpu_gib']:.2f} GiB")


if __name__ == "__main__":
    main()
