"""`diod predict INPUT... --model MODEL`: objects in any video, at its own size."""

from __future__ import annotations

from pathlib import Path

import click

from diodcli.common import (
    app,
    batch_size_option,
    config_option,
    device_option,
    flags_in_errors,
    model_ref_option,
    parse_size,
    precision_option,
    settings_options,
    which_option,
)
from stages.settings import build, declared
from stages.tracks import TrackParams


@click.command("predict")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@model_ref_option(required=True)
@which_option()
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="predictions",
    show_default=True,
    help="Output folder: one <input name>/ folder per input.",
)
@click.option(
    "--size",
    default=None,
    help="Model input HxW (multiples of 4; 28 with a DINOv2 encoder) [default: the frame's "
    "aspect ratio at about the training input's area].",
)
@batch_size_option("Clips", 4)
@device_option()
@precision_option()
@settings_options(TrackParams)
@click.option(
    "--overlay/--no-overlay",
    default=True,
    show_default=True,
    help="Also write overlay.mp4 and contact_sheet.png.",
)
@click.option(
    "--fps",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Frame rate of overlay.mp4 for folders of frames [default: a video's own, else 10].",
)
@click.option("--force", is_flag=True, help="Redo inputs whose output is already complete.")
@config_option
@click.pass_context
def COMMAND(ctx: click.Context, inputs: tuple[str, ...], size: str | None, **options) -> None:
    """Discover objects in video files (mp4, avi, mov, mkv), folders of frames or globs:
    instance-id maps at the original size, an objects file with ids kept across the video,
    an overlay video and a contact sheet per input."""
    from stages.inference import PredictConfig, predict

    with flags_in_errors((TrackParams,)):
        tracks = build(TrackParams, options)
    tracking = {name for name, _ in declared(TrackParams)}
    options = {k: v for k, v in options.items() if k not in tracking}
    config = PredictConfig(
        inputs=inputs,
        size=parse_size(size),
        tracks=tracks,
        out=Path(options.pop("out")),
        **options,
    )
    for folder in predict(app(ctx).store, config):
        click.echo(f"objects: {folder}")
