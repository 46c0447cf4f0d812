"""`diod viz flow`: flow as colour-wheel images beside the frames (PNGs or MP4)."""

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


@click.command("flow")
@dataset_option()
@click.option(
    "--flow",
    "flow_id",
    default=None,
    help="Flow artifact id or prefix (default: the newest complete).",
)
@root_option()
@splits_option("render")
@videos_option
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Output directory (default: <artifact>/viz/<direction>).",
)
@click.option("--mp4", is_flag=True, help="One MP4 per video instead of one PNG per frame.")
@click.option(
    "--backward", is_flag=True, help="Render the backward flow t+1 -> t instead of forward."
)
@config_option
@click.pass_context
def COMMAND(
    ctx: click.Context,
    dataset: str,
    flow_id: str | None,
    root: str | None,
    splits: tuple[str, ...],
    videos: tuple[str, ...],
    out: str | None,
    mp4: bool,
    backward: bool,
) -> None:
    """Render each flow field as a colour wheel (hue = direction, saturation = magnitude,
    white = still) next to its frame."""
    from stages.datasets import open_dataset
    from stages.flow.viz import render_flow

    art = app(ctx).store.resolve(dataset, "flow", flow_id)
    direction = "backward" if backward else "forward"
    out_dir = Path(out) if out else art.path / "viz" / direction
    ds = open_dataset(dataset, root or art.params["root"])
    written = render_flow(
        art, ds, out_dir, splits=splits, videos=videos, mp4=mp4, direction=direction
    )
    click.echo(f"rendered {len(written)} video(s) of flow artifact {art.id} -> {out_dir}")
