"""`diod runs`: what artifacts exist, their status and lineage."""

from __future__ import annotations

import json

import click

from diodcli.common import app, config_option
from stages.artifacts import dir_size


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@click.command("runs")
@click.option("--dataset", default=None, help="Only this dataset.")
@click.option("--stage", default=None, help="Only this stage (flow, masks, train, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_option
@click.pass_context
def COMMAND(ctx: click.Context, dataset: str | None, stage: str | None, as_json: bool) -> None:
    """List artifacts: stage, id, status, created, upstream ids, size."""
    rows = [
        {
            "dataset": a.dataset,
            "stage": a.stage,
            "id": a.id,
            "status": a.live_status(),
            "created": a.manifest.get("created", ""),
            "finished": a.manifest.get("finished"),
            "upstream": a.upstream,
            "size_bytes": dir_size(a.path),
            "path": str(a.path),
        }
        for a in app(ctx).store.list(dataset, stage)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"artifacts in {app(ctx).workspace}")
    for col in ("dataset", "stage", "id", "status", "created", "upstream", "size"):
        table.add_column(
            col, justify="right" if col == "size" else "left", no_wrap=col != "upstream"
        )
    colour = {"complete": "green", "running": "yellow", "failed": "red", "interrupted": "magenta"}
    for r in rows:
        table.add_row(
            r["dataset"],
            r["stage"],
            r["id"],
            f"[{colour.get(r['status'], 'white')}]{r['status']}[/]",
            r["created"][:19].replace("T", " "),
            " ".join(f"{k}:{v}" for k, v in r["upstream"].items()) or "-",
            _human(r["size_bytes"]),
        )
    Console().print(table if rows else f"no artifacts in {app(ctx).workspace}")
