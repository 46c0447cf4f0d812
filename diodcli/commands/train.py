"""`diod train --stage burnin|distill`: train the DIOD model (burn-in, then distillation)."""

from __future__ import annotations

import click

from diodcli.common import app, config_option, dataset_option, force_option, parse_size, root_option

STAGES = ("burnin", "distill")
PRESETS = ("synth-cpu", "kitti", "tripd", "movi")


@click.command("train")
@click.option(
    "--stage",
    type=click.Choice(STAGES),
    required=True,
    help="burnin: on motion masks; distill: teacher-student from a burn-in.",
)
@dataset_option()
@click.option(
    "--masks", default=None, help="masks artifact id (prefix) [default: the newest complete one]."
)
@root_option()
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    default=None,
    help="Settings bundle [default: the dataset's: synth -> synth-cpu, kitti, tripd].",
)
@click.option(
    "--steps", type=click.IntRange(1), default=None, help="Optimizer steps [default: the preset's]."
)
@click.option(
    "--epochs",
    type=click.IntRange(1),
    default=None,
    help="Passes over the training clips (instead of --steps).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=None,
    help="Clips per step and process [default: the preset's].",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Adam learning rate [default: 5e-4].",
)
@click.option(
    "--warmup",
    type=click.IntRange(0),
    default=None,
    help="Linear warm-up steps [default: the preset's].",
)
@click.option(
    "--decay",
    type=click.IntRange(1),
    default=None,
    help="Steps per halving of the learning rate (continuous) [default: the preset's].",
)
@click.option(
    "--alpha",
    type=click.FloatRange(min=0),
    default=None,
    help="fg/bg regularisation strength (eq. 1) [default: 0.3].",
)
@click.option(
    "--reg-region",
    type=click.Choice(["all", "nonobject"]),
    default=None,
    help="Regularise W_fg over the whole map (DIOD) or outside the masks (BMOD) [default: all].",
)
@click.option(
    "--num-slots",
    type=click.IntRange(2),
    default=None,
    help="K, including the background slot [default: the preset's].",
)
@click.option(
    "--clip-length",
    type=click.IntRange(1),
    default=None,
    help="T, frames per clip [default: the preset's].",
)
@click.option(
    "--size", default=None, help="Input size HxW, multiples of 4 [default: the preset's]."
)
@click.option(
    "--encoder-width",
    type=click.FloatRange(min=0, min_open=True, max=4),
    default=None,
    help="ResNet channel multiplier [default: the preset's].",
)
@click.option("--no-augment", is_flag=True, help="Train without the crop/flip augmentation.")
@click.option(
    "--seed", type=int, default=0, help="Seed of initialisation, data order and augmentation."
)
@click.option(
    "--device",
    default="auto",
    help="auto, cpu, cuda or cuda:N (under torchrun: each rank's local GPU).",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    help="auto: bf16 on GPUs and AVX512-BF16 CPUs, else fp16 (GPU) / fp32.",
)
@click.option(
    "--workers",
    type=click.IntRange(0),
    default=None,
    help="Data-loading worker processes [default: cores - 1, 1 to 8].",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=None,
    help="CPU threads of the training process [default: all cores]. On a CPU shared with "
    "other jobs, 1 avoids OpenMP oversubscription stalls.",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(1),
    default=None,
    help="Steps between checkpoints [default: the preset's].",
)
@click.option(
    "--val-every",
    type=click.IntRange(0),
    default=None,
    help="Steps between validations on --val-split (0: at the end only).",
)
@click.option("--val-split", default="val", help="Split scored during training ('' for none).")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run of this configuration from its last checkpoint.",
)
@click.option(
    "--burnin",
    default=None,
    help="distill: burn-in artifact id (prefix) to start from [default: the newest complete one].",
)
@click.option(
    "--ema",
    type=click.FloatRange(0, 1),
    default=None,
    help="distill: teacher EMA keep rate [default: 0.996].",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="distill: confidence p a pseudo-label or motion mask must exceed [default: 0.9].",
)
@click.option(
    "--connection",
    type=click.Choice(["one-to-many", "one-to-one"]),
    default=None,
    help="distill: each connected region of a teacher slot is a candidate, or the whole slot "
    "[default: one-to-many].",
)
@click.option(
    "--no-motion-masks",
    is_flag=True,
    help="distill ablation: only the teacher's pseudo-labels, no motion masks.",
)
@click.option(
    "--offline",
    is_flag=True,
    help="distill ablation: labels from the frozen burn-in model (no EMA teacher).",
)
@force_option
@config_option
@click.pass_context
def COMMAND(
    ctx: click.Context,
    stage: str,
    size: str | None,
    no_augment: bool,
    workers: int,
    burnin: str | None,
    ema: float | None,
    threshold: float | None,
    connection: str | None,
    no_motion_masks: bool,
    offline: bool,
    **options,
) -> None:
    """Train the model: `--stage burnin` on motion masks, then `--stage distill`."""
    from stages.errors import UserError

    distill_only = {
        "--burnin": burnin is not None,
        "--ema": ema is not None,
        "--threshold": threshold is not None,
        "--connection": connection is not None,
        "--no-motion-masks": no_motion_masks,
        "--offline": offline,
    }
    if stage == "distill":
        from stages.train.distill import DistillConfig, distill

        if options.pop("masks") is not None:
            raise UserError("--masks: distillation uses its burn-in's masks; give --burnin")
        config = DistillConfig(
            input_size=parse_size(size, "--size"),
            augment=not no_augment,
            num_workers=workers,
            burnin=burnin,
            ema=0.996 if ema is None else ema,
            threshold=0.9 if threshold is None else threshold,
            connection=connection or "one-to-many",
            motion_masks=not no_motion_masks,
            offline=offline,
            **options,
        )
        art = distill(app(ctx).store, config)
        click.echo(f"distill artifact: {art} ({art.path})")
        return
    given = [name for name, on in distill_only.items() if on]
    if given:
        raise UserError(f"{', '.join(given)}: only for --stage distill")
    from stages.train.stage import TrainConfig, train

    config = TrainConfig(
        input_size=parse_size(size, "--size"),
        augment=not no_augment,
        num_workers=workers,
        **options,
    )
    art = train(app(ctx).store, config)
    click.echo(f"burn-in artifact: {art} ({art.path})")
