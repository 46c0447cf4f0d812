"""Options and helpers shared by every ``diod`` command."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from stages.artifacts import ArtifactStore
from stages.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class App:
    """What the top-level group resolved, passed to commands as ``ctx.obj``."""

    workspace: Path
    verbose: int = 0
    quiet: bool = False

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.workspace)


def app(ctx: click.Context) -> App:
    return ctx.find_object(App) or App(Path("runs"))


def read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"--config {path}: file not found") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"--config {path}: not valid TOML ({exc})") from None


def _normalise(table: dict[str, Any]) -> dict[str, Any]:
    return {
        k.replace("-", "_"): (_normalise(v) if isinstance(v, dict) else v) for k, v in table.items()
    }


def _apply_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """Make a TOML file's values the defaults of the options (click's ``default_map``).

    For a group, tables name subcommands (``[flow]``, ``[data.synth]``). For a command, its
    own table is used if present (so one file can serve several commands), else the top
    level; keys that are no option of the command are an error naming the key.
    """
    if value is None:
        return
    data = _normalise(read_toml(value))
    if isinstance(ctx.command, click.Group):
        ctx.default_map = {**(ctx.default_map or {}), **data}
        return
    table = data.get(ctx.info_name, data) if isinstance(data.get(ctx.info_name), dict) else data
    table = {k: v for k, v in table.items() if not isinstance(v, dict)}
    known = {p.name for p in ctx.command.params}
    unknown = sorted(set(table) - known)
    if unknown:
        raise UserError(
            f"--config {value}: unknown option(s) {', '.join(unknown)} for `{ctx.command_path}`"
        )
    ctx.default_map = {**(ctx.default_map or {}), **table}


config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False),
    callback=_apply_config,
    is_eager=True,
    expose_value=False,
    help="TOML file whose values become this command's option defaults.",
)

force_option = click.option(
    "--force", is_flag=True, help="Recompute the artifact even if a complete one exists."
)


def dataset_option(**kwargs):
    from stages.datasets import ADAPTERS

    return click.option(
        "--dataset",
        "dataset",
        type=click.Choice(sorted(ADAPTERS)),
        required=True,
        help="Dataset adapter (and the workspace folder its artifacts go in).",
        **kwargs,
    )


def root_option(required: bool = False):
    return click.option(
        "--root",
        type=click.Path(file_okay=False),
        required=required,
        help="Dataset root directory"
        + ("." if required else " (default: the one recorded by the upstream artifact)."),
    )


def parse_size(value: str | None, option: str = "--size") -> tuple[int, int] | None:
    """'HxW' -> (H, W)."""
    if value is None:
        return None
    try:
        h, w = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise UserError(f"{option} {value}: expected HxW, e.g. 96x320") from None
    if h <= 0 or w <= 0:
        raise UserError(f"{option} {value}: height and width must be positive")
    return h, w
