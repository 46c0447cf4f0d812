"""`diod masks`: instance motion masks from a flow artifact, or imported id PNGs."""

from __future__ import annotations

import click
from click.core import ParameterSource

from diodcli.common import (
    app,
    config_option,
    dataset_option,
    device_option,
    flag_of,
    flags_in_errors,
    force_option,
    root_option,
    settings_options,
    splits_option,
    workers_option,
)
from stages.errors import UserError
from stages.masks.params import (
    BUILTIN_SEGMENTER,
    GEOMETRIC_ONLY_INSTANCE,
    NO_SEGMENTER,
    InstanceParams,
    MotionParams,
)
from stages.settings import build, declared

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
    default=BUILTIN_SEGMENTER,
    show_default=True,
    help="What decides which pixels move: a trained segmenter (`builtin`: the packaged model, "
    "`make segmenter`; a model file; or the id of a `diod segmenter` artifact of any "
    f"dataset), whose camera fit comes from its model file, or `{NO_SEGMENTER}`: the "
    "geometric rule, with the camera-model, threshold and --contact-min-diff options below.",
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

    _check_sources(ctx, opts)
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


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user set option ``name`` (command line, environment or --config file)."""
    return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)


def _check_sources(ctx: click.Context, opts: dict) -> None:
    """Options that would be silently ignored are errors: ``--segmenter`` with imported
    masks, and the geometric rule's options under a segmenter (its features need the camera
    fit it was trained with, and it decides itself what is static: no ground-contact test)."""
    if opts["import_dir"] is not None or opts["dataset_masks"]:
        if _given(ctx, "segmenter"):
            raise UserError(
                "--segmenter is for masks computed from flow: not with --import/--dataset-masks"
            )
        return
    if opts["segmenter"] == NO_SEGMENTER:
        return
    geometric = [name for name, spec in declared(MotionParams) if spec.cli]
    for name in [*geometric, *GEOMETRIC_ONLY_INSTANCE]:
        if _given(ctx, name):
            raise UserError(
                f"{flag_of(name, SETTINGS)}: a setting of the geometric rule, which decides only "
                f"with --segmenter {NO_SEGMENTER} (a segmenter takes its camera fit from its "
                "model file and decides itself what is static)"
            )
