"""The `diod` command: help everywhere, config files, uniform one-line errors, `diod runs`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
from helpers import run_cli as run

from diodcli.main import cli
from stages.artifacts import ArtifactStore

REPO = Path(__file__).resolve().parents[1]


def _all_commands(group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, click.Context(cmd, parent=ctx), (*path, name))


def test_every_command_has_help_with_defaults(capsys):
    ctx = click.Context(cli)
    commands = list(_all_commands(cli, ctx))
    names = {p[0] for p, _ in commands}
    assert {"data", "runs", "viz"} <= names
    for path, cmd in commands:
        code, out, _ = run([*path, "--help"], capsys)
        assert code == 0, path
        assert "Usage: diod " + " ".join(path) in out
        cmd_ctx = click.Context(cmd)
        with_default = [
            p
            for p in cmd.params
            if isinstance(p, click.Option)
            and not p.is_flag
            and p.get_default(cmd_ctx, call=False) is not None
            and not p.hidden
            and p.expose_value
        ]
        if with_default:
            assert "default:" in out, f"{path}: defaults not shown"


def test_user_error_is_one_line_exit_2(capsys, tmp_path):
    code, out, err = run(
        ["data", "check", "--dataset", "folder", "--root", str(tmp_path / "x")], capsys
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(tmp_path / "x") in err and "Traceback" not in err


def test_usage_error_is_one_line_exit_2(capsys):
    code, _, err = run(["data", "check", "--dataset", "bogus", "--root", "."], capsys)
    assert code == 2 and err.count("\n") == 1 and "--dataset" in err
    code, _, err = run(["no-such-command"], capsys)
    assert code == 2 and err.count("\n") == 1


def test_verbose_shows_traceback(capsys, tmp_path):
    code, _, err = run(
        ["-v", "data", "check", "--dataset", "folder", "--root", str(tmp_path / "x")], capsys
    )
    assert code == 2 and "Traceback" in err


def test_config_file_sets_defaults_and_rejects_unknown_keys(capsys, tmp_path):
    root = tmp_path / "nowhere"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[check]\ndataset = "folder"\nroot = "{root}"\n')
    code, _, err = run(["data", "check", "--config", str(cfg)], capsys)
    assert code == 2 and f"--root {root}" in err  # the values reached the options
    cfg.write_text("[check]\nbogus_key = 1\n")
    code, _, err = run(["data", "check", "--config", str(cfg)], capsys)
    assert code == 2 and "bogus_key" in err and str(cfg) in err
    cfg.write_text("not = [valid")
    code, _, err = run(["runs", "--config", str(cfg)], capsys)
    assert code == 2 and "not valid TOML" in err


def test_group_config_tables_reach_subcommands(capsys, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[data.check]\ndataset = "folder"\nroot = "{tmp_path / "zz"}"\n')
    code, _, err = run(["--config", str(cfg), "data", "check"], capsys)
    assert code == 2 and str(tmp_path / "zz") in err


def test_runs_lists_artifacts(capsys, tmp_path):
    store = ArtifactStore(tmp_path)
    with store.open("synth", "flow", {"m": 1}) as w:
        flow = w.complete()
    with store.open("synth", "masks", {"x": 2}, {"flow": flow}):
        pass  # left running, then released: interrupted
    code, out, _ = run(["--workspace", str(tmp_path), "runs", "--json"], capsys)
    rows = json.loads(out)
    assert code == 0 and [r["stage"] for r in rows] == ["flow", "masks"]
    assert rows[0]["status"] == "complete" and rows[1]["status"] == "interrupted"
    assert rows[1]["upstream"] == {"flow": flow.id} and rows[0]["size_bytes"] > 0
    code, out, _ = run(["--workspace", str(tmp_path), "runs"], capsys)
    assert code == 0 and flow.id in out


def test_console_script_installed():
    exe = Path(sys.executable).parent / "diod"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and "Commands:" in out.stdout


def test_hardware_gives_each_demo_worlds_time_from_the_preset_its_config_names(capsys):
    from diodcli.commands.hardware import DEMO_PRESETS
    from diodcli.common import read_toml
    from stages.machine import DISTILL_STEP_SECONDS, cpu_class, demo_minutes
    from stages.train.presets import PRESETS

    configs = {"flat": "configs/synth.toml", "street": "configs/street.toml"}
    assert set(configs) == set(DEMO_PRESETS)
    root = Path(__file__).resolve().parents[2]
    for world, path in configs.items():
        assert read_toml(str(root / path))["train"]["preset"] == DEMO_PRESETS[world]
    extra = (
        PRESETS[DEMO_PRESETS["street"]]["distill"]["steps"]
        - PRESETS[DEMO_PRESETS["flat"]]["distill"]["steps"]
    )
    assert extra > 0 and DISTILL_STEP_SECONDS[cpu_class()] > 0
    code, out, _ = run(["hardware", "--world", "street"], capsys)
    assert code == 0
    assert f"make demo WORLD=street: about {demo_minutes(cpu_class(), extra):.0f} min" in out
    code, out, _ = run(["hardware"], capsys)
    assert f"make demo: about {demo_minutes(cpu_class()):.0f} min" in out
