"""ResNet-18 against the frozen DINOv2 ViT-S/14 (DIOD*): burn-in and distillation steps and
the encoder's forward, in one process, the cases taking turns step by step on the same
synthetic batches, so that a shared CPU's load weighs on every case alike (bench/train.py
runs its cases one after the other, with the real data loader, and measures peak memory).

Cases: the synth-cpu preset with each encoder (ResNet at 96x320, DINOv2 at the preset's
84x308), and the reference architecture around each (K 45, width 1, ConvGRU 64, T 5, B 2).
DINOv2 weights are random (`--encoder-weights none`): the speed is the same.

    .venv/bin/python bench/encoders.py                 # 1 thread, 10 rounds, bf16 where native
    .venv/bin/python bench/encoders.py --threads 2 --rounds 20 --precision fp32
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from stages.distill.ema import EmaTeacher
from stages.hardware import Distributed, autocast
from stages.model import DIOD
from stages.train.burnin import BurninObjective
from stages.train.config import resolve
from stages.train.distill import DistillObjective
from stages.train.loop import Trainer

REF = dict(num_slots=45, encoder_width=1.0, gru_hidden=64, decoder_channels=64)
CASES = {
    # name: settings over the synth-cpu preset
    "synth-cpu resnet18": {},
    "synth-cpu dinov2": {"encoder": "dinov2-vits14"},
    "ref 96x320 resnet18": {**REF, "clip_length": 5, "batch_size": 2},
    "ref 84x308 dinov2": {**REF, "clip_length": 5, "batch_size": 2, "encoder": "dinov2-vits14"},
}


def make_case(given: dict, stage: str, precision: str, threads: int) -> tuple[Trainer, dict]:
    """A trainer of ``stage`` and a random batch (frames, 3 masks per frame) of its size."""
    runtime = {"device": "cpu", "precision": precision, "threads": threads}
    config = resolve("burnin", "synth", {**given, **runtime}, preset="synth-cpu")
    torch.manual_seed(0)
    model = DIOD(config.model)
    if stage == "distill":
        config = resolve("distill", "synth", {}, burnin=config.to_dict())
        teacher = EmaTeacher(model, config.distill.ema)
        objective = DistillObjective(teacher, config.distill, config.losses)
    else:
        objective = BurninObjective(config.losses)
    b, t, (h, w) = config.loop.batch_size, config.data.clip_length, config.data.input_size
    trainer = Trainer.build(
        model, objective, config.loop, config.runtime, Distributed(), frames_shape=(b, t, 3, h, w)
    )
    generator = torch.Generator().manual_seed(0)
    batch = {
        "frames": torch.rand(b, t, 3, h, w, generator=generator),
        "masks": torch.rand(b, t, 3, h // 4, w // 4, generator=generator) > 0.9,
        "valid": torch.ones(b, t, 3, dtype=torch.bool),
    }
    return trainer, batch


def encoder_forward(trainer: Trainer, batch: dict) -> float:
    """Seconds of the encoder's forward on the batch's frames (no gradients, the run's
    precision): all a frozen DINOv2 costs a burn-in step."""
    model = trainer.model
    x = (batch["frames"].flatten(0, 1) - model.input_mean) / model.input_std
    if model.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), autocast(trainer.device, trainer.precision):
        tic = time.perf_counter()
        model.encoder(x)
        return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10, help="timed steps per case")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for stage in ("burnin", "distill"):
        cases = {n: make_case(g, stage, args.precision, args.threads) for n, g in CASES.items()}
        if stage == "distill":  # the reference-size cases add nothing new here
            cases = {n: c for n, c in cases.items() if n.startswith("synth")}
        times: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in cases}
        for step in range(args.rounds + 1):  # the first round warms up
            for name, (trainer, batch) in cases.items():
                tic = time.perf_counter()
                trainer.step(batch, step)
                steps, encoder = times[name]
                steps.append(time.perf_counter() - tic)
                encoder.append(encoder_forward(trainer, batch))
        for name, (trainer, batch) in cases.items():
            steps, encoder = (t[1:] for t in times[name])
            shape = "x".join(map(str, batch["frames"].shape[-2:]))
            b, t = batch["frames"].shape[:2]
            rows.append(
                f"{stage:8} {name:20} {shape:>7} {b:>2} {t:>2} {trainer.precision:>5} "
                f"{min(steps):7.3f} {statistics.median(steps):7.3f} "
                f"{statistics.median(encoder):8.3f}"
            )
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"threads {args.threads}, {args.rounds} rounds, load average {load}")
    print(f"{'stage':8} {'case':20} {'input':>7} {'B':>2} {'T':>2} {'prec':>5} {'min s':>7} "
          f"{'med s':>7} {'enc fwd':>8}")  # fmt: skip
    print("\n".join(rows))


if __name__ == "__main__":
    main()
