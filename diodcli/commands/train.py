"""`diod train --stage burnin|distill|xmod`: train the DIOD model (burn-in, then
distillation; xMOD: an RGB and a LiDAR model together).

Every training setting's option is made from its declaration (stages.train.config): this
file names no setting, default or range. Options the user does not give stay None and are
filled by the preset (or, in distillation, by the burn-in's configuration).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from diodcli.common import (
    app,
    config_option,
    dataset_option,
    declared_options,
    flags_in_errors,
    force_option,
    root_option,
)
from stages.errors import UserError
from stages.settings import show
from stages.train.config import SECTIONS, STAGES, TABLES
from stages.train.presets import PRESETS

if TYPE_CHECKING:
    from stages.train import TrainRequest

HEADINGS = {
    "model": "Model (paper 4.3)",
    "data": "Data",
    "loop": "Optimisation (paper 3.2)",
    "losses": "Losses (eq. 1)",
    "distill": "Distillation (--stage distill and xmod; paper 3.3)",
    "runtime": "Runtime (not part of the artifact id)",
}
REQUEST = "Run"


def preset_note(name: str) -> str:
    """' Presets: movi 24, synth-cpu 10.' for a setting some preset changes (its
    ``distill`` and ``dinov2`` tables named: 'kitti dinov2 364x1260')."""
    values = [
        f"{preset}{'' if table_name == 'burnin' else ' ' + table_name} {show(table[name])}"
        for preset, tables in PRESETS.items()
        for table_name, table in (
            ("burnin", tables),
            *((t, tables.get(t, {})) for t in TABLES),
        )
        if name in table
    ]
    return f" Presets: {', '.join(values)}." if values else ""


class SectionedCommand(click.Command):
    """Help with the options grouped under their section's heading."""

    def __init__(self, *args, groups: dict[str, list[str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.groups = groups

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = {p.name: p.get_help_record(ctx) for p in self.get_params(ctx)}
        placed = {name for names in self.groups.values() for name in names}
        order = [(REQUEST, [n for n in rows if n not in placed]), *self.groups.items()]
        for heading, names in order:
            records = [rows[n] for n in names if rows.get(n)]
            if records:
                with formatter.section(heading):
                    formatter.write_dl(records)


def build_command(sections: dict[str, type] = SECTIONS) -> click.Command:
    """``diod train``, its options made from ``sections``' declarations."""
    decorators, params, groups = [], {}, {}
    for key, cls in sections.items():
        options, names = declared_options(cls, defaults=False, note=preset_note)
        decorators += options
        params.update(names)
        groups[HEADINGS.get(key, key)] = list(names)

    def command(ctx: click.Context, **options) -> None:
        """Train the model: `--stage burnin` on motion masks, then `--stage distill`."""
        from stages.train import train

        request = to_request(options, params)
        with flags_in_errors(sections.values()):
            art = train(app(ctx).store, request)
        if art is None:
            click.echo("dry run: the plan is above; nothing was trained")
            return
        stage = "burn-in" if request.stage == "burnin" else request.stage
        click.echo(f"{stage} artifact: {art} ({art.path})")

    for decorate in reversed(
        [
            click.option(
                "--stage",
                type=click.Choice(STAGES),
                required=True,
                help="burnin: on motion masks; distill: teacher-student from a burn-in; "
                "xmod: an RGB and a LiDAR model distilled across modalities (docs/lidar.md).",
            ),
            dataset_option(),
            click.option(
                "--preset",
                type=click.Choice(sorted(PRESETS)),
                default=None,
                help="Settings bundle [default: the dataset's: synth -> synth-cpu, kitti, "
                "tripd; distill: the burn-in's].",
            ),
            click.option(
                "--masks",
                default=None,
                help="burnin, or distill with --init: masks artifact id (prefix) [default: "
                "the newest complete one].",
            ),
            click.option(
                "--burnin",
                default=None,
                help="distill: burn-in artifact id (prefix) to start from [default: the newest "
                "complete one].",
            ),
            click.option(
                "--init",
                default=None,
                metavar="MODEL",
                help="Start from a trained model's weights: a model file (diod export-model), "
                "a training checkpoint, or a burnin/distill artifact id of any dataset; "
                "tensors of matching name and shape load, the rest stay freshly initialised "
                "(listed in the log and the manifest). distill: instead of a burn-in, on "
                "--masks (the authors' KITTI recipe, from their TRI-PD model).",
            ),
            click.option(
                "--rgb-model",
                default=None,
                metavar="MODEL",
                help="xmod: the RGB network to start from: a burnin/distill artifact id or a "
                "model file.",
            ),
            click.option(
                "--lidar-model",
                default=None,
                metavar="MODEL",
                help="xmod: the LiDAR network (--modality lidar) to start from: a "
                "burnin/distill artifact id or a model file.",
            ),
            root_option(),
            click.option(
                "--resume",
                is_flag=True,
                help="Continue an interrupted run of this configuration from its last checkpoint.",
            ),
            force_option,
            click.option(
                "--dry-run",
                is_flag=True,
                help="Resolve the configuration, print the run's plan (steps, epochs, LR at "
                "the last step) and exit.",
            ),
            *decorators,
            config_option,
            click.pass_context,
        ]
    ):
        command = decorate(command)
    built = click.command("train", cls=SectionedCommand, groups=groups)(command)
    built.setting_of = params  # param name -> setting name, for to_request
    return built


def to_request(options: Mapping[str, Any], setting_of: Mapping[str, str]) -> TrainRequest:
    """The library request of parsed ``diod train`` options: settings given (not None) by
    setting name, the rest as request fields."""
    from stages.train import TrainRequest

    given = {setting_of[p]: v for p, v in options.items() if p in setting_of and v is not None}
    inputs = {p: v for p, v in options.items() if p not in setting_of}
    if inputs["stage"] == "distill" and inputs["masks"] is not None and inputs["init"] is None:
        raise UserError("--masks: distillation uses its burn-in's masks (or give --init)")
    if inputs["stage"] != "distill" and inputs["burnin"] is not None:
        raise UserError("--burnin: only for --stage distill")
    for option in ("rgb_model", "lidar_model"):
        if inputs["stage"] != "xmod" and inputs[option] is not None:
            raise UserError(f"--{option.replace('_', '-')}: only for --stage xmod")
    if inputs["stage"] == "xmod" and inputs["init"] is not None:
        raise UserError("--init: xmod starts from --rgb-model and --lidar-model")
    return TrainRequest(given=given, **inputs)


COMMAND = build_command()
