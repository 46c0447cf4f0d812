"""Settings declared once: each tunable value's default, accepted values and help live in
one ``Setting``, and everything else (dataclass fields, CLI options, validation, presets,
config files, artifact ids) is derived from it.

A settings class is a frozen dataclass whose fields are made by ``Setting.field()`` and that
derives from ``Settings``: constructing it validates every field against its declaration, so
a value is checked once, wherever it came from (preset, config file, command line, a test).
Errors are ``SettingError``, which names the setting; the CLI rewrites the name into its flag.

Setting names are unique across the sections of one configuration (``model.num_slots`` is
``num_slots`` on the command line and in a TOML table), which is what lets presets, config
files and the command line stay flat.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from stages.errors import UserError


class SettingError(UserError):
    """A value a setting does not accept. ``name`` is the setting, not a CLI flag: the CLI
    puts its flag in front of ``message`` instead. ``message`` reads on from the name
    (" 5: expected ...", ": only for ...")."""

    def __init__(self, name: str, message: str) -> None:
        self.name, self.message = name, message
        super().__init__(f"{name}{message}")


@dataclass(frozen=True)
class Domain:
    """The values a setting accepts.

    ``kind`` is int, float, str, bool or "size" (an (H, W) pair of positive ints, written
    ``HxW`` on the command line); numbers may be bounded, strings may be limited to
    ``choices``; ``optional`` lets None through (a value derived later, e.g. from the data).
    """

    kind: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    optional: bool = False

    def describe(self) -> str:
        if self.choices is not None:
            return " or ".join(self.choices)
        if self.kind == "size":
            return "HxW, two positive integers"
        if self.kind is bool:
            return "true or false"
        noun = {int: "an integer", float: "a number", str: "a string"}[self.kind]
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return noun + (" " + " and ".join(bounds) if bounds else "")

    def metavar(self) -> str:
        if self.choices is not None:
            return "[" + "|".join(self.choices) + "]"
        if self.kind == "size":
            return "HxW"
        low = "" if self.low is None else f"{self.low:g}{'<' if self.low_open else '<='}"
        high = "" if self.high is None else f"{'<' if self.high_open else '<='}{self.high:g}"
        name = {int: "INT", float: "FLOAT", str: "TEXT", bool: "BOOL"}[self.kind]
        return f"{name} [{low}x{high}]" if low or high else name

    def coerce(self, value: Any) -> Any:
        """The value in its canonical type (TOML/JSON give lists for sizes, ints for floats)."""
        if value is None:
            return None
        if self.kind == "size" and isinstance(value, str):
            try:
                return parse_size(value)
            except ValueError:
                return value  # not accepted: the caller reports it
        if self.kind == "size" and isinstance(value, list | tuple):
            return tuple(value)
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.kind == "size":
            return (
                isinstance(value, tuple)
                and len(value) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
            )
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, self.kind):
                return False
            if self.low is not None and (value <= self.low if self.low_open else value < self.low):
                return False
            return self.high is None or (
                value < self.high if self.high_open else value <= self.high
            )
        return isinstance(value, str) and (self.choices is None or value in self.choices)


def ints(low: int | None = None, high: int | None = None, *, optional: bool = False) -> Domain:
    return Domain(int, low, high, optional=optional)


def floats(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> Domain:
    return Domain(float, low, high, low_open, high_open, optional=optional)


def choice(*names: str) -> Domain:
    return Domain(str, choices=names)


TEXT = Domain(str)
FLAG = Domain(bool)
SIZE = Domain("size")
SIZE_OR_NONE = Domain("size", optional=True)


def show(value: Any) -> str:
    """A value as a user would type it (sizes as HxW)."""
    if isinstance(value, tuple | list) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W); a ValueError says what was expected."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected HxW, e.g. 96x320, got {text!r}") from None
    return h, w


@dataclass(frozen=True)
class Setting:
    """One tunable value: its default, what it accepts, what it means (shown as CLI help).

    ``flag`` names the CLI option when it is not the setting's name (``input_size`` is
    ``--size``); ``cli=False`` keeps a setting out of the command line (presets and config
    files can still set it)."""

    default: Any
    domain: Domain
    help: str
    flag: str | None = None
    cli: bool = True

    def field(self) -> Any:
        """A dataclass field carrying this declaration (a new one for every class)."""
        return dataclasses.field(default=self.default, metadata={"setting": self})

    def option_name(self, name: str) -> str:
        return "--" + (self.flag or name).replace("_", "-")


class Settings:
    """Base of the settings dataclasses: construction validates every declared field."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            spec = f.metadata.get("setting")
            if spec is None:
                continue
            value = spec.domain.coerce(getattr(self, f.name))
            if not spec.domain.accepts(value):
                raise SettingError(
                    f.name, f" {show(getattr(self, f.name))}: expected {spec.domain.describe()}"
                )
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Rules between fields of one section (raise SettingError); none by default."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def declared(cls: type) -> Iterator[tuple[str, Setting]]:
    """(name, Setting) of a settings class's declared fields, nested sections included."""
    for f in dataclasses.fields(cls):
        spec = f.metadata.get("setting")
        if spec is not None:
            yield f.name, spec
        elif dataclasses.is_dataclass(f.default_factory):  # type: ignore[arg-type]
            yield from declared(f.default_factory)  # type: ignore[arg-type]


def build(cls: type, values: Mapping[str, Any]) -> Any:
    """An instance of ``cls`` from flat ``values`` (setting name -> value); nested sections
    are built from the same flat mapping; names it does not declare are ignored."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if "setting" in f.metadata:
            if f.name in values:
                kwargs[f.name] = values[f.name]
        elif dataclasses.is_dataclass(f.default_factory):  # type: ignore[arg-type]
            kwargs[f.name] = build(f.default_factory, values)  # type: ignore[arg-type]
    return cls(**kwargs)


def section(cls: type) -> Any:
    """A nested section field: ``labels: PseudoLabelConfig = section(PseudoLabelConfig)``."""
    return dataclasses.field(default_factory=cls)


def flatten(values: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts (a saved configuration) -> one flat {name: value} mapping (setting
    names are unique across sections)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(flatten(value))
        else:
            out[key] = value
    return out
