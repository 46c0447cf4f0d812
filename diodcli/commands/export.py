"""`diod export`: run a trained model over whole videos and write its predictions."""

from __future__ import annotations

import click

from diodcli.common import (
    app,
    batch_size_option,
    config_option,
    dataset_option,
    device_option,
    force_option,
    precision_option,
    root_option,
    which_option,
)


@click.command("export")
@dataset_option()
@click.option("--split", default="val", help="Split whose videos are predicted.")
@click.option(
    "--model",
    default=None,
    help="Model: a burnin/distill artifact id (prefix), or `burnin` / `distill` for the newest complete one of that stage [default: the newest distill, else burn-in].",
)
@which_option
@root_option()
@click.option(
    "--clip-length",
    type=click.IntRange(1),
    default=None,
    help="Frames per clip, state reset between clips [default: the training T]; 1 = every frame alone (KITTI protocol).",
)
@batch_size_option("Clips", 4)
@device_option()
@precision_option()
@click.option(
    "--soft", is_flag=True, help="Also store the soft attention maps (T, K, h, w) float16."
)
@click.option("--png", is_flag=True, help="Write colour overlays of the slots as PNG per frame.")
@click.option(
    "--mp4", is_flag=True, help="Write colour overlays of the slots as one MP4 per video."
)
@click.option(
    "--fps",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    help="Frame rate of --mp4 videos.",
)
@force_option
@config_option
@click.pass_context
def COMMAND(ctx: click.Context, **options) -> None:
    """Predict slot segmentations of a split (zarr; optional PNG/MP4 overlays)."""
    from stages.export import ExportConfig, export

    art = export(app(ctx).store, ExportConfig(**options))
    click.echo(f"predictions artifact: {art} ({art.path})")
