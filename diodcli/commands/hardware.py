"""`diod hardware`: what this machine gives the pipeline, and how long the demo takes here."""

from __future__ import annotations

import click

from diodcli.common import config_option

#: The preset each `make demo WORLD=...` trains (configs/synth.toml, configs/street.toml).
DEMO_PRESETS = {"flat": "synth-cpu", "street": "synth-street"}


@click.command("hardware")
@config_option
@click.option(
    "--world",
    type=click.Choice(sorted(DEMO_PRESETS)),
    default="flat",
    help="The demo whose time to expect: `make demo WORLD=...`.",
)
def COMMAND(world: str) -> None:
    """CPU class (bf16 native or fp32), cores free now, GPU, and the expected `make demo`
    time on this class of machine (measured figures, docs/results.md)."""
    from stages.machine import describe
    from stages.train.presets import PRESETS

    steps = {w: PRESETS[DEMO_PRESETS[w]]["distill"]["steps"] for w in (world, "flat")}
    demo = "make demo" + ("" if world == "flat" else f" WORLD={world}")
    for line in describe(demo, steps[world] - steps["flat"]):
        click.echo(line)
