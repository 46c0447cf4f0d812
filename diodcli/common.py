"""Options and helpers shared by every ``diod`` command."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from stages import settings
from stages.artifacts import ArtifactStore
from stages.errors import UserError
from stages.hardware import DEVICE, PRECISION, WORKERS
from stages.settings import Setting, ints

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


def model_ref_option(**kwargs: Any) -> Callable:
    """``--model``: a trained network by artifact or file (``stages.inference.resolve_model``)."""
    return click.option(
        "--model",
        help="A model file (`diod export-model`; predict only), a burnin/distill artifact id "
        "(prefix) of any dataset in the workspace, or `burnin` / `distill` for the newest "
        "complete one.",
        **kwargs,
    )


def which_option(default: str | None = "teacher", extra: str = "") -> Callable:
    """``--which``: the network of a distill artifact; ``default=None`` leaves it to the
    command (``extra`` says what it then is)."""
    return click.option(
        "--which",
        type=click.Choice(["teacher", "student"]),
        default=default,
        show_default=default is not None,
        help="Network of a distill artifact (the EMA teacher is the steadier one)." + extra,
    )


def protocol_option(what: str) -> Callable:
    """``--protocol``: ours (``diod``) or the authors' (``paper``), see ``stages.protocols``."""
    from stages.protocols import PROTOCOLS

    return click.option(
        "--protocol",
        type=click.Choice(PROTOCOLS),
        default=PROTOCOLS[0],
        show_default=True,
        help=what,
    )


def splits_option(what: str) -> Callable:
    return click.option(
        "--split", "splits", multiple=True, help=f"Split(s) to {what} (default: all found)."
    )


videos_option = click.option(
    "--video", "videos", multiple=True, help="Video name(s) to render (default: all)."
)


def parse_size(value: str | None, option: str = "--size") -> tuple[int, int] | None:
    """'HxW' -> (H, W)."""
    if value is None:
        return None
    try:
        h, w = settings.parse_size(value)
    except ValueError as exc:
        raise UserError(f"{option} {exc}") from None
    if h <= 0 or w <= 0:
        raise UserError(f"{option} {value}: height and width must be positive")
    return h, w


# -- options made from declared settings (stages.settings) -----------------------------------
class SizeType(click.ParamType):
    """HxW on the command line, a string or a [H, W] list in a config file."""

    name = "HxW"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, list | tuple):
            return tuple(value)
        if value == "auto":  # a stage that knows its frames may resolve it (train)
            return value
        try:
            return settings.parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


CLICK_TYPES = {int: int, float: float, str: str}


def setting_option(
    name: str,
    spec: Setting,
    *,
    default: Any = None,
    help: str | None = None,
    extra: str = "",
    check: bool = False,
) -> Callable:
    """The click option of a declared setting. A setting that lives in a settings class is
    checked there, once, wherever its value comes from; ``check=True`` checks it here, for
    the commands whose settings have no class. ``default=None`` leaves an option the user
    did not give as None, so that presets can fill it; the help then shows the declared
    default itself."""
    flag = spec.option_name(name)
    text = (help or spec.help) + extra
    if default is None and spec.default is not None:
        text += f" [default: {settings.show(spec.default)}]"
    domain = spec.domain
    if domain.kind is bool:
        bare = flag[2:]
        return click.option(
            f"--{bare}/--no-{bare}", default=default, show_default=default is not None, help=text
        )
    kind = SizeType() if domain.kind == "size" else CLICK_TYPES[domain.kind]

    def checked(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None and not domain.accepts(value):
            raise UserError(f"{flag} {settings.show(value)}: expected {domain.describe()}")
        return value

    return click.option(
        flag,
        type=kind,
        default=default,
        metavar=domain.metavar(),
        show_default=default is not None,
        help=text,
        callback=checked if check else None,
    )


def declared_options(
    cls: type, *, defaults: bool, note: Callable[[str], str] = lambda _name: ""
) -> tuple[list[Callable], dict[str, str]]:
    """The options of a settings class's CLI settings (nested sections included) and the
    map param name -> setting name. ``defaults``: options default to the declared value
    (else None, for presets to fill); ``note(name)`` is appended to a setting's help."""
    decorators, params = [], {}
    for name, spec in settings.declared(cls):
        if spec.cli:
            default = spec.default if defaults else None
            decorators.append(setting_option(name, spec, default=default, extra=note(name)))
            params[(spec.flag or name).replace("-", "_")] = name
    return decorators, params


def settings_options(*classes: type) -> Callable:
    """A decorator adding the CLI options of ``classes``' settings, their declared values
    as defaults (for commands without presets)."""

    def decorate(command: Callable) -> Callable:
        for cls in reversed(classes):
            for option in reversed(declared_options(cls, defaults=True)[0]):
                command = option(command)
        return command

    return decorate


def flag_of(name: str, classes: Iterable[type]) -> str:
    """The CLI flag of setting ``name`` (the bare name for one not on the command line)."""
    for cls in classes:
        for declared_name, spec in settings.declared(cls):
            if declared_name == name:
                return spec.option_name(name) if spec.cli else name
    return name


@contextlib.contextmanager
def flags_in_errors(classes: Iterable[type]) -> Iterator[None]:
    """A SettingError raised inside names the setting's CLI flag, not its name."""
    try:
        yield
    except settings.SettingError as exc:
        raise UserError(f"{flag_of(exc.name, list(classes))}{exc.message}") from None


def device_option(**kwargs: Any) -> Callable:
    return setting_option("device", DEVICE, default=DEVICE.default, check=True, **kwargs)


def precision_option(default: str | None = PRECISION.default, **kwargs: Any) -> Callable:
    """``--precision``; ``default=None`` leaves it to the command (an ``extra`` help says
    what it then is)."""
    spec = PRECISION if default is not None else dataclasses.replace(PRECISION, default=None)
    return setting_option("precision", spec, default=default, check=True, **kwargs)


def workers_option(default_rule: str) -> Callable:
    """``--workers``: N processes, 0 for none, unset for the command's ``default_rule``."""
    return setting_option(
        "num_workers",
        WORKERS,
        help=WORKERS.help.replace("from the cores", default_rule),
        check=True,
    )


def batch_size_option(what: str, default: int | None, extra: str = "") -> Callable:
    """``--batch-size``: how many ``what`` go through the network at once."""
    return setting_option(
        "batch_size",
        Setting(default, ints(1), f"{what} per network call."),
        default=default,
        extra=extra,
        check=True,
    )
