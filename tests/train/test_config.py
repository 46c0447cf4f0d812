"""The run configuration: declared settings, presets, resolution, the artifact id and the
`diod train` options made from the declarations (what the CLI parses is what `resolve`
gets: every shipped config file and preset goes through the same path)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

from stages.artifacts import artifact_id
from stages.errors import UserError
from stages.model import DIOD
from stages.settings import Setting, SettingError, declared, floats
from stages.train import config as run_config
from stages.train.config import SECTIONS, resolve, setting_names
from stages.train.presets import PRESETS

REPO = Path(__file__).resolve().parents[2]


def _parse(*args: str):
    """``diod train ARGS`` parsed as the CLI does, down to the library request."""
    from diodcli.commands.train import COMMAND, to_request

    ctx = COMMAND.make_context("train", list(args))
    return to_request(ctx.params, COMMAND.setting_of)


def _resolve(request, burnin=None):
    return resolve(
        request.stage, request.dataset, request.given, preset=request.preset, burnin=burnin
    )


def test_setting_names_are_unique_across_sections_and_each_is_an_option():
    from diodcli.commands.train import COMMAND

    seen: dict[str, str] = {}
    for key, cls in SECTIONS.items():
        for name, _spec in declared(cls):
            assert name not in seen, f"{name} in {seen.get(name)} and {key}"
            seen[name] = key
    on_cli = {name for cls in SECTIONS.values() for name, spec in declared(cls) if spec.cli}
    assert set(COMMAND.setting_of.values()) == on_cli


CODE = ("stages", "diodcli")


def _literals_outside_declarations(value: float) -> list[str]:
    """Where ``value`` is written in stages/ and diodcli/ other than as the default of a
    ``Setting(...)`` declaration (another setting may share a number: alpha and an IoU)."""
    found = []
    for folder in CODE:
        for path in (REPO / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            defaults = {
                id(node.args[0])
                for node in ast.walk(tree)
                if isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "Setting"
                and node.args
            }
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and type(node.value) in (int, float)
                    and node.value == value
                    and id(node) not in defaults
                ):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


@pytest.mark.parametrize(
    "setting,value",
    [("ema", 0.996), ("threshold", 0.9), ("alpha", 0.3), ("lr", 5e-4)],
)
def test_paper_defaults_are_written_once(setting, value):
    """Each paper value is its setting's declared default and written nowhere else in
    stages/ or diodcli/ (the synth generator's shapes and the flow legend's colours use
    0.3 and 0.9 as their own numbers: they are listed)."""
    defaults = {name: spec.default for cls in SECTIONS.values() for name, spec in declared(cls)}
    assert defaults[setting] == value
    others = [
        f for f in _literals_outside_declarations(value)
        if not f.startswith(("stages/synthgen/", "stages/flow/viz.py"))
    ]  # fmt: skip
    assert not others, others


def test_presets_resolve_for_both_stages_and_their_models_run():
    """Every preset, burn-in and distillation from its own burn-in: valid sections, the
    paper's architecture on the full presets, a model that runs at a tiny size."""
    for name in PRESETS:
        # at a tiny size: the paper-mode presets' token norm is built for one map size
        burnin = resolve("burnin", "folder", {"input_size": (16, 24)}, preset=name)
        distill = resolve("distill", "folder", burnin=burnin.to_dict())
        assert distill.model == burnin.model and distill.preset == name
        assert distill.distill is not None and burnin.distill is None
        if not name.startswith("synth-"):
            assert (burnin.model.encoder_width, burnin.model.slot_dim) == (1.0, 64)
            assert burnin.data.epoch == distill.data.epoch == "videos"  # the authors' epoch
            # the paper's 500 distillation epochs; KITTI: the authors' 101 from TRI-PD
            assert distill.loop.epochs == (101 if name == "kitti" else 500)
            assert distill.loop.steps is None
            assert burnin.model.map_size == (4, 6) and burnin.data.strong_view
        torch.manual_seed(0)
        with torch.no_grad():
            out = DIOD(burnin.model).eval()(torch.rand(1, 2, 3, 16, 24))
        assert out.masks.shape == (1, 2, burnin.model.num_slots, 4, 6)


def test_every_shipped_config_file_parses_through_the_cli_and_resolves():
    """configs/*.toml: each table's keys are options of its command; [train] goes through
    the CLI's parsing into `resolve`, for both stages."""
    import click

    from diodcli.common import read_toml
    from diodcli.main import cli

    configs = sorted((REPO / "configs").glob("*.toml"))
    assert {"synth.toml", "kitti.toml", "tripd.toml", "movi.toml"} <= {p.name for p in configs}
    ctx = click.Context(cli)
    for path in configs:
        for command, table in read_toml(str(path)).items():
            names = {p.name for p in cli.get_command(ctx, command).params}
            unknown = {k.replace("-", "_") for k in table} - names
            assert not unknown, f"{path.name} [{command}]: {unknown}"
        request = _parse("--stage", "burnin", "--dataset", "folder", "--config", str(path))
        burnin = _resolve(request)
        distill = _resolve(dataclasses.replace(request, stage="distill"), burnin.to_dict())
        assert distill.model == burnin.model, path.name


def test_resolution_order_and_distillation_inherits_its_burnin():
    base = resolve("burnin", "synth")
    assert base.preset == "synth-cpu" and base.model.num_slots == 10
    assert base.loop.lr == 5e-4 and base.loop.steps == 400 and base.loop.epochs is None
    given = resolve("burnin", "synth", {"num_slots": 6, "epochs": 2, "lr": 1e-3})
    assert given.model.num_slots == 6 and given.loop.epochs == 2 and given.loop.steps is None
    distill = resolve("distill", "synth", {"ema": 0.99}, burnin=given.to_dict())
    assert distill.model.num_slots == 6 and distill.loop.lr == 1e-3  # inherited
    assert distill.loop.steps == 400 and distill.loop.epochs is None  # the preset's distill
    assert distill.loop.warmup == 40 and distill.runtime.val_every == 0
    assert distill.distill.ema == 0.99 and distill.distill.labels.threshold == 0.9
    with pytest.raises(SettingError, match="num_slots 7: distillation keeps the burn-in"):
        resolve("distill", "synth", {"num_slots": 7}, burnin=given.to_dict())
    with pytest.raises(SettingError, match="ema: only for --stage distill"):
        resolve("burnin", "synth", {"ema": 0.99})


def test_the_street_preset_trains_synth_cpus_burnin_and_distils_it_longer():
    """The street results compare the two presets on shared burn-ins (docs/results.md):
    that holds only while synth-street's burn-in is synth-cpu's and its distillation
    differs in its length alone."""
    cpu = resolve("burnin", "synth", preset="synth-cpu")
    street = resolve("burnin", "synth", preset="synth-street")
    assert {**street.to_dict(), "preset": "synth-cpu"} == cpu.to_dict()
    cpu_distill = resolve("distill", "synth", burnin=cpu.to_dict())
    street_distill = resolve("distill", "synth", burnin=street.to_dict())
    assert (cpu_distill.loop.steps, street_distill.loop.steps) == (400, 800)
    longer = resolve("distill", "synth", {"steps": 800}, burnin=cpu.to_dict())
    assert {**street_distill.to_dict(), "preset": "synth-cpu"} == longer.to_dict()


def test_the_fine_street_preset_is_synth_street_at_128x416_three_times_as_long():
    """Its results are those of synth-street runs given `--size 128x416` and the longer step
    counts on the command line (docs/results.md): that holds only while nothing else differs."""
    fine = resolve("burnin", "synth", preset="synth-street-fine")
    given = resolve(
        "burnin", "synth", {"input_size": (128, 416), "steps": 1200}, preset="synth-street"
    )
    assert {**fine.to_dict(), "preset": "synth-street"} == given.to_dict()
    fine_distill = resolve("distill", "synth", burnin=fine.to_dict())
    given_distill = resolve("distill", "synth", {"steps": 2400}, burnin=given.to_dict())
    assert fine_distill.data.input_size == (128, 416) and fine_distill.loop.steps == 2400
    assert {**fine_distill.to_dict(), "preset": "synth-street"} == given_distill.to_dict()


@pytest.mark.parametrize("dataset", ["synth", "kitti", "tripd"])
def test_a_distillation_straight_from_a_model_is_the_one_from_its_preset_burnin(dataset):
    """``--init`` (no burn-in record) stands in the preset's burn-in of the same network: a
    DINOv2 one at the preset's DINOv2 input size, as its burn-in would have been."""
    for network in ({}, {"encoder": "dinov2-vits14"}):
        burnin = resolve("burnin", dataset, network)
        from_burnin = resolve("distill", dataset, burnin=burnin.to_dict())
        straight = resolve("distill", dataset, network)
        assert straight.to_dict() == from_burnin.to_dict()
        assert straight.data.input_size == burnin.data.input_size


def test_bad_values_name_the_setting_in_the_library_and_the_flag_in_the_cli(tmp_path):
    with pytest.raises(SettingError, match=r"threshold 1: expected a number >= 0 and < 1"):
        resolve("distill", "synth", {"threshold": 1.0}, burnin=resolve("burnin", "synth").to_dict())
    with pytest.raises(
        SettingError, match="reg_region 'x'|reg_region x: expected all or nonobject"
    ):
        resolve("burnin", "synth", {"reg_region": "x"})
    from click.testing import CliRunner

    from diodcli.main import cli

    result = CliRunner().invoke(
        cli,
        ["--workspace", str(tmp_path), "train", "--stage", "burnin", "--dataset", "synth",
         "--num-slots", "1"],
    )  # fmt: skip
    assert isinstance(result.exception, UserError)
    assert str(result.exception) == "--num-slots 1: expected an integer >= 2"


def test_a_new_setting_is_one_declaration_and_changes_the_artifact_id(monkeypatch):
    """Add a setting to the losses section: it gets a CLI option, resolution sets it, and
    the artifact id hashes it with no list to update."""
    from diodcli.commands.train import build_command

    @dataclasses.dataclass(frozen=True)
    class WithDummy(run_config.LossConfig):
        dummy: float = Setting(1.0, floats(0), "A test-only weight.").field()

    monkeypatch.setitem(SECTIONS, "losses", WithDummy)
    assert setting_names("burnin")["dummy"] == "losses"
    command = build_command(SECTIONS)
    assert "dummy" in command.setting_of
    ids = []
    for value in (1.0, 2.0):
        config = resolve("burnin", "synth", {"dummy": value})
        assert config.losses.dummy == value
        ids.append(artifact_id("synth", "burnin", {"config": config.identity()}, {}, 1))
    assert ids[0] != ids[1]
    # runtime settings are not part of the id
    a = resolve("burnin", "synth", {"log_every": 1}).identity()
    b = resolve("burnin", "synth", {"log_every": 7}).identity()
    assert a == b


@pytest.mark.parametrize(
    ("preset", "authors"),
    [("kitti", 16.57e6), ("tripd", 16.61e6)],
)
def test_paper_mode_has_the_authors_parameter_count(preset, authors):
    """Their model: 16.57 M parameters at KITTI size, 16.61 M at TRI-PD's (the per-position
    token norm makes the count depend on the map size)."""
    model = DIOD(resolve("burnin", "folder", preset=preset).model)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - authors) / authors < 0.005


def test_distillation_cannot_change_the_map_size_of_a_map_norm_network():
    burnin = resolve("burnin", "folder", {"input_size": (16, 24)}, preset="kitti")
    with pytest.raises(SettingError, match="input_size 32x24"):
        resolve("distill", "folder", {"input_size": (32, 24)}, burnin=burnin.to_dict())


def test_the_per_token_norm_has_no_map_size():
    config = resolve("burnin", "folder", {"token_norm": "token"}, preset="kitti")
    assert config.model.map_size is None and config.model.decoder_layers == "6"
