"""`diod segmenter`: train the learned moving-object segmenter that `diod masks --segmenter`
uses in place of the geometric threshold."""

from __future__ import annotations

import click

from diodcli.common import (
    app,
    config_option,
    dataset_option,
    flags_in_errors,
    force_option,
    settings_options,
)
from stages.masks.learned.params import SegmenterTraining
from stages.masks.params import MotionParams
from stages.settings import build

SETTINGS = (SegmenterTraining,)


@click.command("segmenter")
@dataset_option()
@click.option(
    "--flow",
    "flows",
    multiple=True,
    help="Flow artifact id or prefix to train on (repeatable: worlds, sizes, cameras; `all`: "
    "every complete one; default: the newest complete). Its dataset needs moving/static "
    "ground truth (synth).",
)
@click.option(
    "--init",
    default=None,
    help="Start from this segmenter's weights (fine-tuning): `builtin`, a model file or a "
    "segmenter artifact id (default: from scratch).",
)
@settings_options(*SETTINGS)
@force_option
@config_option
@click.pass_context
def COMMAND(ctx: click.Context, **opts) -> None:
    """Train a moving-object segmenter on flow + ground truth of synthetic worlds
    (docs/masks.md, "Learned segmenter"). Resumable: rerun the same command after a kill."""
    from stages.masks.learned.stage import MODEL_FILE, SegmenterConfig, train_segmenter

    with flags_in_errors(SETTINGS):
        training = build(SegmenterTraining, opts)
    config = SegmenterConfig(
        dataset=opts["dataset"],
        flows=tuple(opts["flows"]),
        init=opts["init"],
        training=training,
        motion=MotionParams(),
        force=opts["force"],
    )
    art = train_segmenter(app(ctx).store, config)
    s = art.manifest["summary"]
    click.echo(
        f"segmenter {art.id}: {s['steps']} steps on {s['examples']['frames']} frames, "
        f"final loss {s['final_loss']} -> {art.path / MODEL_FILE}"
    )
