"""`diod flow`: optical flow for every video of a dataset into a versioned Zarr artifact."""

from __future__ import annotations

import click

from diodcli.common import (
    app,
    batch_size_option,
    config_option,
    dataset_option,
    device_option,
    force_option,
    parse_size,
    precision_option,
    root_option,
    splits_option,
    workers_option,
)
from stages.errors import UserError


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """'i/n' -> (i, n)."""
    if value is None:
        return None
    try:
        index, count = (int(v) for v in value.split("/"))
    except ValueError:
        raise UserError(f"--shard {value}: expected i/n, e.g. 0/4") from None
    return index, count


@click.command("flow")
@dataset_option()
@root_option(required=True)
@splits_option("process")
@click.option(
    "--model",
    default="raft",
    help="opencv-dis, opencv-farneback (no weights), any ptlflow model name (raft, "
    "raft_small, ...), or gt: the dataset's own ground-truth flow (synth, MOVi).",
)
@click.option(
    "--ckpt",
    default="things",
    help="ptlflow checkpoint name (downloaded once), a local checkpoint file, or 'none' for "
    "random weights (tests). Ignored by the OpenCV models.",
)
@click.option(
    "--iters",
    type=click.IntRange(1),
    default=None,
    help="Refinement iterations (default: the model's).",
)
@click.option(
    "--size", default=None, help="Resize frames to HxW before flow (default: native size)."
)
@batch_size_option("Frame pairs", 8)
@workers_option("cores - 1, at most 8: one core runs the model")
@device_option()
@precision_option(
    help="Autocast precision of ptlflow models (auto: bf16 on GPUs, fp32 on CPUs; never fp16, whose range RAFT's correlation can exceed)."
)
@click.option(
    "--shard",
    default=None,
    help="i/n: compute every n-th video starting at i (default: RANK/WORLD_SIZE or "
    "SLURM_PROCID/SLURM_NTASKS, else 0/1).",
)
@click.option(
    "--backward/--no-backward",
    default=True,
    help="Also store backward flow t+1 -> t (the masks stage's occlusion check uses it).",
)
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Leave out unreadable videos (listed in the manifest) instead of failing.",
)
@click.option(
    "--finalize",
    is_flag=True,
    help="Only mark a sharded artifact complete once all its videos exist.",
)
@force_option
@config_option
@click.pass_context
def COMMAND(
    ctx: click.Context,
    dataset: str,
    root: str,
    splits: tuple[str, ...],
    model: str,
    ckpt: str,
    iters: int | None,
    size: str | None,
    batch_size: int,
    workers: int | None,
    device: str,
    precision: str,
    shard: str | None,
    backward: bool,
    skip_bad: bool,
    finalize: bool,
    force: bool,
) -> None:
    """Optical flow t -> t+1 (and t+1 -> t) for every video, as float16 in a Zarr artifact.

    Resumable (rerun the same command after a crash) and shardable over processes, GPUs and
    nodes (--shard i/n, or torchrun / SLURM variables): the last shard to finish completes
    the artifact.
    """
    from stages.flow import FlowConfig, compute_flow, finalize_flow

    config = FlowConfig(
        dataset=dataset,
        root=root,
        splits=splits,
        model=model,
        ckpt=ckpt,
        iters=iters,
        size=parse_size(size),
        batch_size=batch_size,
        workers=workers,
        device=device,
        precision=precision,
        shard=parse_shard(shard),
        backward=backward,
        skip_bad=skip_bad,
        force=force,
    )
    store = app(ctx).store
    art = finalize_flow(store, config) if finalize else compute_flow(store, config)
    if not art.is_complete:
        click.echo(f"flow artifact {art.id}: this shard is done, others still running ({art.path})")
        return
    summary = art.manifest.get("summary", {})
    line = f"flow artifact {art.id}: {summary.get('videos', 0)} videos, {summary.get('pairs', 0)} pairs"
    if summary.get("skipped"):
        line += f", {len(summary['skipped'])} skipped (unreadable)"
    if "epe" in summary:
        line += f", EPE {summary['epe']['epe']:.3f} px (zero flow {summary['epe']['zero_flow_epe']:.3f})"
    click.echo(f"{line} -> {art.path}")
