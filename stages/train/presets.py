"""Named training presets: the paper's settings per dataset, plus a CPU-sized one for synth.

A preset fills every option the user does not give. The full-architecture presets follow
SPEC section 2-3 (ResNet-18 at width 1, 45 slots on KITTI/TRI-PD, 24 on MOVi-E, T = 5/6,
batch 8, Adam 5e-4, 3000 warm-up steps, halving every 50k steps, alpha 0.3, 400 burn-in
epochs as the paper's TRI-PD ablation settles on). ``synth-cpu`` trades width for time so
that a burn-in finishes in minutes on 2 CPU cores (see docs/training.md for its figures).
"""

from __future__ import annotations

from typing import Any

from stages.errors import UserError

PRESETS: dict[str, dict[str, Any]] = {
    "kitti": dict(
        num_slots=45,
        clip_length=5,
        input_size=(368, 1248),
        batch_size=8,
        epochs=400,
    ),
    "tripd": dict(
        num_slots=45,
        clip_length=5,
        input_size=(480, 968),
        crop_top=128 / 608,  # the reference drops the top 128 rows of the half-size frame
        batch_size=8,
        epochs=400,
    ),
    "movi": dict(
        num_slots=24,
        clip_length=6,
        input_size=(256, 256),
        batch_size=8,
        epochs=400,
    ),
    "synth-cpu": dict(
        num_slots=10,
        clip_length=4,
        input_size=(96, 320),
        batch_size=4,
        steps=500,
        encoder_width=0.25,
        decoder_channels=16,
        gru_hidden=32,
        warmup=100,
        checkpoint_every=250,
        val_every=250,
    ),
}
# Shared by every preset unless it says otherwise (SPEC section 3).
COMMON: dict[str, Any] = dict(
    encoder_width=1.0,
    decoder_channels=64,
    gru_hidden=64,
    crop_top=0.0,
    lr=5e-4,
    warmup=3000,
    decay=50_000,
    grad_clip=1.0,
    alpha=0.3,
    reg_region="all",
    checkpoint_every=2000,
    val_every=5000,
)
DEFAULT_FOR_DATASET = {"synth": "synth-cpu", "kitti": "kitti", "tripd": "tripd"}


def preset(name: str | None, dataset: str) -> tuple[str, dict[str, Any]]:
    """(name, values) of the preset to use: the given one or the dataset's default."""
    name = name or DEFAULT_FOR_DATASET.get(dataset)
    if name is None:
        raise UserError(
            f"--preset: dataset '{dataset}' has no default preset; choose one of {', '.join(PRESETS)}"
        )
    if name not in PRESETS:
        raise UserError(f"--preset {name}: unknown (expected one of {', '.join(PRESETS)})")
    return name, {**COMMON, **PRESETS[name]}
