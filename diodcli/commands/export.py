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
    protocol_option,
    root_option,
    which_option,
)

#: how the help names a model-run setting's default (stages.protocols.ExportSettings)
PROTOCOL_DEFAULT = " [default: the protocol's: diod {}; paper {}]"


@click.command("export")
@dataset_option()
@click.option("--split", default="val", help="Split whose videos are predicted.")
@click.option(
    "--model",
    default=None,
    help="Model: a burnin/distill/xmod artifact id (prefix), or `burnin` / `distill` / `xmod` for the newest complete one of that stage [default: the newest xmod, else distill, else burn-in].",
)
@click.option(
    "--modality",
    type=click.Choice(["rgb", "lidar", "fused"]),
    default=None,
    help="Which of an xmod model's two networks runs: the RGB one (on frames), the LiDAR "
    "one (on the sweeps), or both, late-fused (objects both see, IoU > 0.1) [default: rgb]; "
    "other models have one, of their own modality.",
)
@protocol_option(
    "How the model runs: `diod` (the options' defaults) or `paper`, the authors' evaluation "
    "run (student network, BatchNorm on each batch's statistics, fp32; TRI-PD clips of 5 one "
    "per pass, KITTI images 8 per pass), for `diod eval --protocol paper`. Options that "
    "differ from the protocol's are an error."
)
@which_option(None, PROTOCOL_DEFAULT.format("teacher", "student"))
@click.option(
    "--batchnorm",
    type=click.Choice(["eval", "train"]),
    default=None,
    help="BatchNorm statistics: `eval` the trained running ones; `train` each forward "
    "pass's batch (the running ones untouched), as the authors evaluated."
    + PROTOCOL_DEFAULT.format("eval", "train"),
)
@root_option()
@click.option(
    "--clip-length",
    type=click.IntRange(1),
    default=None,
    help="Frames per clip, state reset between clips; 1 = every frame alone (KITTI protocol)"
    + PROTOCOL_DEFAULT.format("the training T", "5 on TRI-PD, 1 on KITTI, else the training T"),
)
@batch_size_option(
    "Clips (with one-frame clips: frames, across videos)",
    None,
    PROTOCOL_DEFAULT.format(4, "1, 8 on KITTI"),
)
@device_option()
@precision_option(None, extra=PROTOCOL_DEFAULT.format("auto", "fp32"))
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
