"""`diod report`: the results table (motion masks baseline, burn-in, DIOD, ablations)."""

from __future__ import annotations

import json

import click

from diodcli.common import app, config_option, dataset_option

COLUMNS = (
    ("fg_ari", "fg-ARI"),
    ("all_ari", "all-ARI"),
    ("f1_50", "F1@50"),
    ("precision", "P@50"),
    ("recall", "R@50"),
    ("moving_recall", "moving R"),
    ("static_recall", "static R"),
)


@click.command("report")
@dataset_option()
@click.option("--split", default="val", help="Split whose scores are compared.")
@click.option("--all", "every", is_flag=True, help="Every score, not only the newest per kind.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_option
@click.pass_context
def COMMAND(ctx: click.Context, dataset: str, split: str, every: bool, as_json: bool) -> None:
    """Compare the scored sources of a split (newest `diod eval` of each kind and protocol), in %."""
    from rich.console import Console
    from rich.table import Table

    from stages.errors import UserError
    from stages.report import results

    rows = [r.as_dict() for r in results(app(ctx).store, dataset, split, every=every)]
    if not rows:
        raise UserError(f"no complete eval artifact for dataset '{dataset}', split '{split}'")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{dataset} / {split} (%)")
    table.add_column("method", no_wrap=True)
    table.add_column("protocol")
    table.add_column("source", no_wrap=True)
    for _, title in COLUMNS:
        table.add_column(title, justify="right")
    for r in rows:
        cells = ["-" if r[k] is None else f"{100 * r[k]:.1f}" for k, _ in COLUMNS]
        table.add_row(r["label"], r["protocol"], r["source"], *cells)
    Console(width=max(120, Console().width)).print(table)
