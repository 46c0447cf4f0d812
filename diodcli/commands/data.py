"""`diod data`: generate the synthetic dataset, convert MOVi-E, validate a dataset layout."""

from __future__ import annotations

from pathlib import Path

import click

from diodcli.common import config_option, dataset_option, parse_size, root_option, splits_option
from stages.progress import track


@click.group("data")
def COMMAND() -> None:
    """Datasets: generate the built-in synthetic one, convert MOVi-E, check a layout."""


@COMMAND.command("synth")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output root.")
@click.option("--seed", type=int, default=0, help="Everything is determined by this seed.")
@click.option("--train-videos", type=click.IntRange(0), default=96, help="Videos in train/.")
@click.option("--val-videos", type=click.IntRange(0), default=8, help="Videos in val/.")
@click.option("--frames", type=click.IntRange(2), default=12, help="Frames per video.")
@click.option("--size", default="96x320", help="Frame size HxW.")
@click.option(
    "--world",
    type=click.Choice(["flat", "street"]),
    default="flat",
    help="flat: billboards over a ground plane; street: a 3-D street, real driving's hard cases.",
)
@click.option(
    "--fps",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Frame rate of the street world (default 10); speeds are m/s, so motion follows.",
)
@click.option(
    "--still-fraction",
    type=click.FloatRange(0, 1),
    default=None,
    help="Street world: share of videos from a still, raised camera (default 0.25; "
    "1: surveillance-like footage only).",
)
@click.option(
    "--lidar",
    is_flag=True,
    help="Also a simulated LiDAR sweep per frame and the dense depth (lidar.npz), either world.",
)
@click.option(
    "--lidar-beams",
    type=click.IntRange(1, 512),
    default=None,
    help="With --lidar: lasers (default 64, KITTI's HDL-64E; fewer: a sparser sensor).",
)
@click.option(
    "--lidar-step",
    type=click.FloatRange(0.01, 10),
    default=None,
    help="With --lidar: degrees of azimuth between firings (default 0.17, the HDL-64E's).",
)
@click.option(
    "--lidar-weak-fraction",
    type=click.FloatRange(0, 1),
    default=None,
    help="With --lidar: share of objects with weak returns, drawn per video (default 0.2).",
)
@click.option(
    "--lidar-weak-dropout",
    type=click.FloatRange(0, 1),
    default=None,
    help="With --lidar: share of a weak object's returns that are lost (default 0.7).",
)
@click.option(
    "--night-fraction",
    type=click.FloatRange(0, 1),
    default=None,
    help="Street world: share of videos filmed at night: dark, low-contrast, noisy frames; "
    "the LiDAR sees as by day (default 0).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace a different dataset at --out (one of the same settings is reused).",
)
@config_option
def synth(
    out: str,
    seed: int,
    train_videos: int,
    val_videos: int,
    frames: int,
    size: str,
    world: str,
    fps: float | None,
    still_fraction: float | None,
    lidar: bool,
    lidar_beams: int | None,
    lidar_step: float | None,
    lidar_weak_fraction: float | None,
    lidar_weak_dropout: float | None,
    night_fraction: float | None,
    force: bool,
) -> None:
    """Write the built-in synthetic dataset in the `folder` layout (deterministic by seed)."""
    from stages.errors import UserError
    from stages.synthgen import WORLDS, generate

    h, w = parse_size(size)
    extra = {}
    if fps is not None:
        if world != "street":
            raise UserError(f"--fps {fps}: only the street world has a frame rate")
        extra["fps"] = fps
    if still_fraction is not None:
        if world != "street":
            raise UserError(f"--still-fraction {still_fraction}: only the street world has cameras")
        extra["static_camera_fraction"] = still_fraction
    if night_fraction is not None:
        if world != "street":
            raise UserError(f"--night-fraction {night_fraction}: only the street world has nights")
        extra["night_fraction"] = night_fraction
    if lidar:
        extra["lidar"] = True
    for option, setting, value in (
        ("--lidar-beams", "lidar_beams", lidar_beams),
        ("--lidar-step", "lidar_azimuth_step_deg", lidar_step),
        ("--lidar-weak-fraction", "lidar_weak_object_fraction", lidar_weak_fraction),
        ("--lidar-weak-dropout", "lidar_weak_dropout", lidar_weak_dropout),
    ):
        if value is None:
            continue
        if not lidar:
            raise UserError(f"{option} {value}: sets the LiDAR of --lidar, which is off")
        extra[setting] = value
    config = WORLDS[world](
        seed=seed,
        train_videos=train_videos,
        val_videos=val_videos,
        frames=frames,
        height=h,
        width=w,
        **extra,
    )
    root = generate(Path(out), config, force=force)
    click.echo(f"synth dataset ready at {root}")


@COMMAND.command("movi")
@click.option(
    "--src",
    type=click.Path(),
    required=True,
    help="MOVi-E's TFDS folder: movi_e/<resolution>/<version>/ or any folder above it.",
)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output root.")
@click.option("--resolution", default="256x256", show_default=True, help="256x256 or 128x128.")
@click.option(
    "--split",
    "--splits",
    "splits",
    multiple=True,
    help="train, validation, test; repeat or comma-separate (default: every split found).",
)
@click.option(
    "--limit", type=click.IntRange(1), default=None, help="At most this many videos per split."
)
@click.option("--depth", is_flag=True, help="Also keep MOVi-E's depth maps (in gt_codes.npz).")
@config_option
def movi(
    src: str, out: str, resolution: str, splits: tuple[str, ...], limit: int | None, depth: bool
) -> None:
    """Convert MOVi-E's TFRecord shards to the `movi` layout (no TensorFlow needed).

    Resumable: rerun the same command after an interruption; videos already written are
    skipped.
    """
    from stages.movi import MoviConfig, convert_movi

    names = tuple(s.strip() for value in splits for s in value.split(",") if s.strip())
    record = convert_movi(
        MoviConfig(
            src=Path(src),
            out=Path(out),
            resolution=resolution,
            splits=names,
            limit=limit,
            depth=depth,
        )
    )
    done = ", ".join(
        f"{split} {s['videos']} videos{'' if s['complete'] else ' (not all: --limit)'}"
        for split, s in record["splits"].items()
    )
    click.echo(f"movi dataset ready at {out}: {done}")


@COMMAND.command("check")
@dataset_option()
@root_option(required=True)
@splits_option("check")
@click.option("--quick", is_flag=True, help="Read image headers only (no full decode).")
@config_option
def check(dataset: str, root: str, splits: tuple[str, ...], quick: bool) -> None:
    """Validate a dataset layout and summarise it (videos, frames, resolution, labels)."""
    from rich.console import Console
    from rich.table import Table

    from stages.datasets import open_dataset
    from stages.errors import UserError

    ds = open_dataset(dataset, root)
    names = list(splits) or ds.splits()
    if not names:
        raise UserError(f"--root {root}: no videos found in the {dataset} layout")
    table = Table(title=f"{dataset} dataset at {root}")
    for col in ("split", "videos", "frames", "resolution", "GT instances", "motion masks"):
        table.add_column(col)
    for split in names:
        s = ds.check(split, decode=not quick, progress=track)
        table.add_row(
            split,
            str(s["videos"]),
            str(s["frames"]),
            ", ".join(s["resolutions"]),
            f"{s['gt_instances']}/{s['videos']} videos",
            f"{s['motion_masks']}/{s['videos']} videos",
        )
    Console().print(table)
