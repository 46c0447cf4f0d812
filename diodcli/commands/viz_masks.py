"""`diod viz masks`: motion masks over the frames (PNGs or MP4), or their raw id PNGs."""

from __future__ import annotations

from pathlib import Path

import click

from diodcli.common import (
    app,
    config_option,
    dataset_option,
    root_option,
    splits_option,
    videos_option,
)


@click.command("masks")
@dataset_option()
@click.option(
    "--masks",
    "masks_id",
    default=None,
    help="Masks artifact id or prefix (default: newest complete).",
)
@root_option()
@splits_option("render")
@videos_option
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Output directory (default: <artifact>/viz/<format>).",
)
@click.option(
    "--format",
    "mode",
    type=click.Choice(["png", "mp4", "ids"]),
    default="png",
    help="Overlay PNG per frame, overlay MP4 per video, or raw id PNGs (the --import layout).",
)
@config_option
@click.pass_context
def COMMAND(
    ctx: click.Context,
    dataset: str,
    masks_id: str | None,
    root: str | None,
    splits: tuple[str, ...],
    videos: tuple[str, ...],
    out: str | None,
    mode: str,
) -> None:
    """Overlay each frame's masks (one colour per id, outlined) on the frame."""
    from stages.datasets import open_dataset
    from stages.masks.viz import render_masks

    art = app(ctx).store.resolve(dataset, "masks", masks_id)
    out_dir = Path(out) if out else art.path / "viz" / mode
    ds = open_dataset(dataset, root or art.params["root"])
    written = render_masks(art, ds, out_dir, splits=splits, videos=videos, mode=mode)
    click.echo(f"rendered {len(written)} video(s) of masks artifact {art.id} -> {out_dir}")
