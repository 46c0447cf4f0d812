"""Entry point of the ``diod`` command: global options and uniform error handling."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click

from diodcli.common import App, config_option
from diodcli.lazy import ModuleGroup
from stages import __version__
from stages.errors import UserError
from stages.progress import configure

# FFmpeg (inside OpenCV) prints its own complaint about a broken video to stderr; the
# UserError that follows names the file, so the user reads one line, not two.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

CONTEXT = {"show_default": True, "help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(
    cls=ModuleGroup,
    package="diodcli.commands",
    exclude=("viz_",),
    context_settings=CONTEXT,
)
@click.option(
    "--workspace",
    type=click.Path(file_okay=False),
    default="runs",
    envvar="DIOD_WORKSPACE",
    show_envvar=True,
    help="Where artifacts live: <workspace>/<dataset>/<stage>/<id>/.",
)
@click.option("-v", "--verbose", count=True, help="More log lines; tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@config_option
@click.version_option(__version__, prog_name="diod")
@click.pass_context
def cli(ctx: click.Context, workspace: str, verbose: int, quiet: bool) -> None:
    """Unsupervised object discovery in video with DIOD.

    Stages, each writing a versioned artifact: flow -> masks -> train (burnin, distill)
    -> export -> eval. `diod runs` lists what exists.
    """
    configure(quiet=quiet, verbose=verbose)
    ctx.obj = App(workspace=Path(workspace), verbose=verbose, quiet=quiet)


def _fail(message: str, code: int) -> None:
    click.echo(f"diod: error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: user errors are one line on stderr and exit code 2, never a traceback."""
    args = sys.argv[1:] if argv is None else argv
    verbose = bool(os.environ.get("DIOD_DEBUG")) or any(
        a in ("-v", "--verbose") or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in args
    )
    try:
        code = cli.main(args=args, prog_name="diod", standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.UsageError as exc:
        where = f"`{exc.ctx.command_path}`: " if exc.ctx is not None else ""
        _fail(where + exc.format_message().replace("\n", " "), exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message().replace("\n", " "), exc.exit_code)
    except UserError as exc:
        if verbose:
            traceback.print_exc()
        _fail(str(exc).replace("\n", " "), 2)
    except KeyboardInterrupt:
        _fail("interrupted; rerun the same command to resume", 130)
    except Exception as exc:  # a bug, not a user error: say so and keep the details one flag away
        if verbose:
            traceback.print_exc()
            _fail(f"internal error: {type(exc).__name__}: {exc}", 1)
        _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with -v for the traceback)", 1)


if __name__ == "__main__":
    main()
