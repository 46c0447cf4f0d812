"""`diod export-model`: one trained network as a self-contained model file."""

from __future__ import annotations

from pathlib import Path

import click

from diodcli.common import app, config_option, model_ref_option, which_option


@click.command("export-model")
@model_ref_option(default="distill", show_default=True)
@which_option()
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="The model file to write (e.g. synth-diod.pt).",
)
@config_option
@click.pass_context
def COMMAND(ctx: click.Context, model: str, which: str, out: str) -> None:
    """Write a trained network, its configuration, input geometry and lineage to one file
    that `diod predict --model FILE` runs anywhere (loaded with torch's weights_only)."""
    from stages import modelfile
    from stages.inference import resolve_model

    loaded = resolve_model(app(ctx).store, model, which)
    path = modelfile.save(loaded, Path(out))
    lineage = loaded.lineage
    click.echo(
        f"model file: {path} ({loaded.network} of {lineage['dataset']}/{lineage['stage']}/"
        f"{lineage['artifact']}, step {lineage['steps']})"
    )
