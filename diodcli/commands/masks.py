"""`diod masks`: instance motion masks from a flow artifact, or imported id PNGs."""

from __future__ import annotations

import click

from diodcli.common import (
    app,
    config_option,
    dataset_option,
    device_option,
    flags_in_errors,
    force_option,
    root_option,
    settings_options,
    splits_option,
    workers_option,
)
from stages.masks.params import InstanceParams, MotionParams
from stages.settings import build

SETTINGS = (MotionParams, InstanceParams)


@click.command("masks")
@dataset_option()
@root_option()
@click.option(
    "--flow", "flow_id", default=None, help="Flow artifact id or prefix (default: newest complete)."
)
@click.option(
    "--import",
    "import_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Import id PNGs from DIR/<split>/<video>/<frame>.png instead of computing from flow.",
)
@click.option(
    "--dataset-masks",
    is_flag=True,
    help="Import the dataset's own precomputed masks (folder motion/, KITTI motion/, TRI-PD est_masks/).",
)
@click.option(
    "--segmenter",
    default=None,
    help="Moving pixels by a trained segmenter instead of the geometric threshold: `builtin` "
    "(the packaged model, `make segmenter`), a model file, or the id of a `diod segmenter` "
    "artifact of any dataset; the camera-model options then come from the model file.",
)
@splits_option("compute or import")
@settings_options(*SETTINGS)
@workers_option("one per core")
@device_option(extra=" Where the segmenter's network runs (--segmenter only).")
@click.option("--report", is_flag=True, help="Print mask quality (P/R/F1 vs GT) per split.")
@force_option
@config_option
@click.pass_context
def COMMAND(ctx: click.Context, **opts) -> None:
    """Instance motion masks of moving objects, from flow (geometric or a learned segmenter,
    docs/masks.md) or imported."""
    from stages.masks.quality import format_scores
    from stages.masks.stage import MasksConfig, compute_masks

    with flags_in_errors(SETTINGS):
        motion = build(MotionParams, opts)
        instances = build(InstanceParams, opts)
    config = MasksConfig(
        dataset=opts["dataset"],
        root=opts["root"],
        flow=opts["flow_id"],
        import_dir=opts["import_dir"],
        dataset_masks=opts["dataset_masks"],
        segmenter=opts["segmenter"],
        splits=tuple(opts["splits"]),
        motion=motion,
        instances=instances,
        workers=opts["workers"],
        device=opts["device"],
        force=opts["force"],
    )
    art = compute_masks(app(ctx).store, config)
    s = art.manifest["summary"]
    click.echo(
        f"masks {art.id}: {s['videos']} videos, {s['frames']} frames, "
        f"{s['masks_per_frame']} masks/frame -> {art.path}"
    )
    if opts["report"]:
        if not s["quality"]:
            click.echo("no ground truth instances in these splits: no quality report")
        for split, scores in s["quality"].items():
            click.echo(f"mask quality, split {split} (IoU > 0.5):")
            for line in format_scores(scores):
                click.echo(line)
