"""`diod viz`: pictures of artifacts (one subcommand per module `viz_<name>.py`)."""

from __future__ import annotations

import click

from diodcli.lazy import ModuleGroup


@click.group("viz", cls=ModuleGroup, package="diodcli.commands", prefix="viz_")
def COMMAND() -> None:
    """Render artifacts as images or videos (flow colour wheels, mask overlays)."""
