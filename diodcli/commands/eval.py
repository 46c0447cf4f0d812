"""`diod eval`: fg-ARI, all-ARI, F1@50 (and more) of predictions against the GT."""

from __future__ import annotations

import json

import click

from diodcli.common import (
    app,
    config_option,
    dataset_option,
    force_option,
    protocol_option,
    root_option,
)

#: rows of the terminal table: (label, key in scores.json, shown as a percentage)
ROWS = (
    ("fg-ARI", "fg_ari", True),
    ("all-ARI", "all_ari", True),
    ("F1@50", "f1_50", True),
    ("precision@50", "precision", True),
    ("recall@50", "recall", True),
    ("F1@25", "f1_25", True),
    ("F1@75", "f1_75", True),
    ("mIoU", "miou", True),
    ("samples scored", "n_samples", False),
    ("samples skipped", "n_skipped", False),
    ("GT objects", "n_gt", False),
    ("predicted segments", "n_pred", False),
)
#: rows of the scores a protocol adds (MOVi's video-level scores), shown when present
EXTRA_ROWS = (("video fg-ARI", "video_fg_ari"), ("mBO", "mbo"))
#: the ARI skip rule of each protocol, for the table's caption
SKIP_RULES = {
    "diod": "ARI samples with < 2 GT objects skipped",
    "paper": "ARI samples whose largest GT id is <= 1, or whose fg-ARI is undefined, skipped",
}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _print_table(scores: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from stages.metrics import SIZE_NAMES

    table = Table(
        title=title,
        caption="scores in %, IoU thresholds strict (IoU > 0.5); " + SKIP_RULES[scores["protocol"]],
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, key, pct in ROWS:
        table.add_row(label, _pct(scores[key]) if pct else str(scores[key]))
    for label, key in EXTRA_ROWS:
        if key in scores:
            table.add_row(label, _pct(scores[key]))
    for bucket in SIZE_NAMES:
        s = scores["by_size"][bucket]
        table.add_row(
            f"{bucket} objects P / R / F1@50",
            f"{_pct(s['precision'])} / {_pct(s['recall'])} / {_pct(s['f1'])}  (n_gt {s['n_gt']})",
        )
    for kind, s in (scores["by_motion"] or {}).items():
        table.add_row(f"{kind} objects recall@50", f"{_pct(s['recall'])}  (n_gt {s['n_gt']})")
    for group, kinds in scores["by_group"].items():
        for kind, s in kinds.items():
            table.add_row(f"{group}: {kind} recall@50", f"{_pct(s['recall'])}  (n_gt {s['n_gt']})")
    for condition, kinds in scores["by_condition"].items():
        for kind, s in kinds.items():
            table.add_row(
                f"videos {kind} {condition}: F1@50 / all-ARI",
                f"{_pct(s['f1'])} / {_pct(s['all_ari'])}  ({s['n_videos']} videos)",
            )
    Console().print(table)


@click.command("eval")
@dataset_option()
@click.option(
    "--predictions",
    default=None,
    help="export artifact id (or prefix, or 'latest') to score [default: the newest complete one].",
)
@click.option(
    "--masks",
    default=None,
    help="Score this masks artifact (id, prefix or 'latest') as predictions: the motion-mask baseline.",
)
@click.option("--split", default="val", help="Split to score.")
@protocol_option(
    "How to score: `diod` (docs/eval.md) or `paper`, the authors' protocol per dataset "
    "(their GT preparation, ARI and skip rule; predictions made by `diod export --protocol "
    "paper`)."
)
@click.option(
    "--granularity",
    type=click.Choice(["frame", "clip"]),
    default=None,
    help="ARI sample: one frame (KITTI), or a clip of --clip-len frames flattened (TRI-PD) "
    "[default: frame; the paper protocol fixes it on TRI-PD (clip) and KITTI (frame)].",
)
@click.option(
    "--clip-len",
    type=click.IntRange(1),
    default=None,
    help="Frames per ARI clip [default: 5].",
)
@click.option(
    "--pixels",
    type=click.Choice(["all", "lidar"]),
    default="all",
    show_default=True,
    help="Pixels scored: all (the paper's, for every modality), or only where the LiDAR "
    "sweep has a point on the map grid (a diagnostic of LiDAR and fused maps; not in "
    "`diod report`).",
)
@root_option()
@click.option(
    "--json", "as_json", is_flag=True, help="Print scores.json to stdout instead of a table."
)
@force_option
@config_option
@click.pass_context
def COMMAND(
    ctx: click.Context,
    dataset: str,
    predictions: str | None,
    masks: str | None,
    split: str,
    protocol: str,
    granularity: str | None,
    clip_len: int | None,
    pixels: str,
    root: str | None,
    as_json: bool,
    force: bool,
) -> None:
    """Score predictions (fg-ARI, all-ARI, F1@25/50/75, mIoU, by size and motion)."""
    from stages.evaluate import EvalConfig, evaluate, read_scores

    config = EvalConfig(
        dataset=dataset,
        split=split,
        predictions=predictions,
        masks=masks,
        protocol=protocol,
        granularity=granularity,
        clip_len=clip_len,
        pixels=pixels,
        root=root,
        force=force,
    )
    art = evaluate(app(ctx).store, config)
    scores = read_scores(art)
    if as_json:
        click.echo(json.dumps(scores, indent=2, sort_keys=True))
        return
    source = scores["source"]
    where = "" if pixels == "all" else ", LiDAR pixels only"
    _print_table(
        scores,
        f"{dataset} {split}, protocol {scores['protocol']}{where}: {source['stage']} "
        f"{source['id']} (eval {art.id})",
    )
    click.echo(f"scores: {art.path / 'scores.json'}")
