"""`diod masks`: instance motion masks from a flow artifact, or imported id PNGs."""

from __future__ import annotations

import click

from diodcli.common import (
    app,
    config_option,
    dataset_option,
    force_option,
    root_option,
    workers_option,
)
from stages.masks.params import InstanceParams, MotionParams

MOTION = MotionParams()
INSTANCES = InstanceParams()


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
@click.option("--split", "splits", multiple=True, help="Split(s) (default: all of the source).")
@click.option(
    "--camera-model",
    type=click.Choice(["homography", "fundamental"]),
    default=MOTION.camera_model,
    help="Camera-motion model: transfer residual (homography) or Sampson distance (fundamental).",
)
@click.option(
    "--robust", type=click.Choice(["ransac", "lmeds"]), default=MOTION.robust, help="Robust fit."
)
@click.option(
    "--ransac-threshold",
    type=click.FloatRange(min=0, min_open=True),
    default=MOTION.ransac_threshold,
    help="Inlier distance of the robust fit, px.",
)
@click.option(
    "--min-residual",
    type=click.FloatRange(min=0),
    default=MOTION.min_residual,
    help="A pixel moves if its residual exceeds this many px ...",
)
@click.option(
    "--rel-residual",
    type=click.FloatRange(min=0),
    default=MOTION.rel_residual,
    help="... and this fraction of its flow magnitude ...",
)
@click.option(
    "--adaptive-k",
    type=click.FloatRange(min=0),
    default=MOTION.adaptive_k,
    help="... and the frame's median residual + k robust sigmas.",
)
@click.option(
    "--background-window",
    type=click.FloatRange(min=0),
    default=MOTION.background_window,
    help="Remove the residual's slowly varying part over windows this fraction of the width (0: off).",
)
@click.option(
    "--min-area",
    type=click.IntRange(min=1),
    default=INSTANCES.min_area,
    help="Smallest mask kept, px (imported masks too).",
)
@click.option(
    "--max-masks",
    type=click.IntRange(1, 65535),
    default=INSTANCES.max_masks,
    help="Most masks per frame; the largest are kept (imported masks too).",
)
@click.option(
    "--open-radius",
    type=click.IntRange(min=0),
    default=INSTANCES.open_radius,
    help="Opening radius, px.",
)
@click.option(
    "--close-radius",
    type=click.IntRange(min=0),
    default=INSTANCES.close_radius,
    help="Closing radius, px.",
)
@click.option(
    "--split-ratio",
    type=click.FloatRange(min=0),
    default=INSTANCES.split_ratio,
    help="Split a mask whose flow forms 2 clusters this many pooled spreads apart ...",
)
@click.option(
    "--split-min-distance",
    type=click.FloatRange(min=0),
    default=INSTANCES.split_min_distance,
    help="... and at least this many px apart.",
)
@click.option(
    "--contact-min-diff",
    type=click.FloatRange(min=0),
    default=INSTANCES.contact_min_diff,
    help="Drop a mask whose bottom moves within this many px of the ground below it: static (0: off).",
)
@click.option(
    "--persist-frac",
    type=click.FloatRange(0, 1),
    default=INSTANCES.persist_frac,
    help="Keep a mask if this fraction of it moves in a flow-warped neighbouring frame (0: keep all).",
)
@click.option("--seed", type=int, default=MOTION.seed, help="Seed of the robust fits.")
@workers_option("one per core")
@click.option("--report", is_flag=True, help="Print mask quality (P/R/F1 vs GT) per split.")
@force_option
@config_option
@click.pass_context
def COMMAND(ctx: click.Context, **opts) -> None:
    """Instance motion masks of moving objects, from flow (geometric, paper 3.1, docs/masks.md) or imported."""
    from stages.masks.quality import format_scores
    from stages.masks.stage import MasksConfig, compute_masks

    motion = MotionParams(
        camera_model=opts["camera_model"],
        robust=opts["robust"],
        ransac_threshold=opts["ransac_threshold"],
        min_residual=opts["min_residual"],
        rel_residual=opts["rel_residual"],
        adaptive_k=opts["adaptive_k"],
        background_window=opts["background_window"],
        seed=opts["seed"],
    )
    instances = InstanceParams(
        open_radius=opts["open_radius"],
        close_radius=opts["close_radius"],
        min_area=opts["min_area"],
        split_ratio=opts["split_ratio"],
        split_min_distance=opts["split_min_distance"],
        contact_min_diff=opts["contact_min_diff"],
        persist_frac=opts["persist_frac"],
        max_masks=opts["max_masks"],
    )
    config = MasksConfig(
        dataset=opts["dataset"],
        root=opts["root"],
        flow=opts["flow_id"],
        import_dir=opts["import_dir"],
        dataset_masks=opts["dataset_masks"],
        splits=tuple(opts["splits"]),
        motion=motion,
        instances=instances,
        workers=opts["workers"],
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
