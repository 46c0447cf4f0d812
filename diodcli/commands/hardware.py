"""`diod hardware`: what this machine gives the pipeline, and how long the demo takes here."""

from __future__ import annotations

import click

from diodcli.common import config_option


@click.command("hardware")
@config_option
@click.option(
    "--world",
    type=click.Choice(["flat", "street"]),
    default="flat",
    help="The demo whose time to expect: `make demo WORLD=...`.",
)
def COMMAND(world: str) -> None:
    """CPU class (bf16 native or fp32), cores free now, GPU, and the expected `make demo`
    time on this class of machine (measured figures, docs/results.md)."""
    from stages.machine import describe

    for line in describe(world):
        click.echo(line)
