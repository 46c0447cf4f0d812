"""Writing the whole synthetic dataset, published atomically at ``out``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from stages.errors import UserError
from stages.progress import log, track
from stages.synthgen.config import VideoSetConfig
from stages.synthgen.street.config import StreetConfig
from stages.synthgen.street.video import write_street_video
from stages.synthgen.video import write_video as write_flat_video

GENERATOR_VERSION = 1
VIDEOS_PER_WORKER = 8


def write_video(root: Path, config: VideoSetConfig, split: str, index: int) -> str:
    """Write one video with the generator of the config's world; returns its name."""
    if isinstance(config, StreetConfig):
        return write_street_video(root, config, split, index)
    return write_flat_video(root, config, split, index)


def _jobs(config: VideoSetConfig) -> list[tuple[str, int]]:
    return [("train", i) for i in range(config.train_videos)] + [
        ("val", i) for i in range(config.val_videos)
    ]


def _write_all(root: Path, config: VideoSetConfig, workers: int) -> None:
    jobs = _jobs(config)
    if workers <= 1:
        for split, index in track(jobs, "synth videos"):
            write_video(root, config, split, index)
        return
    # spawn, not fork: the caller may hold threads (torch, a progress bar) that fork would
    # copy mid-flight; each worker imports the generator afresh
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    try:
        futures = [pool.submit(write_video, root, config, split, index) for split, index in jobs]
        for future in track(futures, "synth videos"):
            future.result()
    finally:  # on failure, do not keep generating videos that will be thrown away
        pool.shutdown(wait=True, cancel_futures=True)


def _recorded(out: Path) -> dict | None:
    """What ``synth.json`` in ``out`` says generated it (None: not a synth dataset)."""
    try:
        return json.loads((out / "synth.json").read_text())
    except (OSError, ValueError):
        return None


def generate(
    out: Path, config: VideoSetConfig, *, force: bool = False, workers: int | None = None
) -> Path:
    """Write the dataset to ``out`` in the folder layout and return ``out``.

    ``config`` is a ``SynthConfig`` (the flat world) or a ``StreetConfig`` (the street world).

    A dataset already at ``out`` with the same generator version and settings is reused
    as it is, so scripts (``make demo``) can ask for it every time. Everything is generated
    in a temporary directory beside ``out`` and renamed into place
    at the end, so an interrupted run never leaves a partial dataset at ``out``. Videos are
    independent (one generator each), so ``workers`` processes give the same bytes as one;
    by default one per CPU, with at least VIDEOS_PER_WORKER videos each.
    """
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    summary = {"generator_version": GENERATOR_VERSION, "config": config.to_json()}
    if out.is_dir() and any(out.iterdir()) and not force:
        if _recorded(out) == summary:
            log.info("%s already holds this synthetic dataset (same settings): reused", out)
            return out
        raise UserError(
            f"--out {out}: already exists and holds other data (another seed, settings or "
            "generator version; use --force to replace it)"
        )
    if workers is None:  # a process costs ~1 s to start: only worth it for a few videos each
        workers = max(1, min(os.cpu_count() or 1, len(_jobs(config)) // VIDEOS_PER_WORKER))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise UserError(
            f"--out {out}: cannot create a directory beside it ({exc.strerror})"
        ) from None
    try:
        _write_all(staging, config, workers)
        (staging / "synth.json").write_text(json.dumps(summary, indent=1) + "\n")
        staging.chmod(0o755)  # mkdtemp makes it private; a dataset is meant to be shared
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(retired / out.name)
            staging.rename(out)
            shutil.rmtree(retired)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("wrote %d synthetic videos to %s", len(_jobs(config)), out)
    return out
