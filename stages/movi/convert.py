"""``diod data movi``: MOVi-E's TFDS shards -> the ``movi`` dataset layout, without TensorFlow.

Shards are ``movi_e-<split>.tfrecord-NNNNN-of-MMMMM`` in TFDS's
``movi_e/<resolution>/<version>/``; ``--src`` may name that folder or any folder above it
down from the one holding ``movi_e/``. Each record is one video, written to
``<out>/<split>/<name>/`` (layout in ``stages.datasets.movi``) in a hidden folder beside it
and renamed into place once complete, so a killed run leaves no half video: a rerun decodes
only the names of the videos already there and skips them. Output bytes depend only on the
records (fixed PNG settings, fixed zip timestamps), so reruns and resumed runs are equal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stages.artifacts import atomic_write_json, publish
from stages.datasets.arrays import write_npz
from stages.datasets.base import safe_name
from stages.datasets.imageio import write_png
from stages.datasets.movi import GT_FILE, META_FILE, RECORD_FILE, SPLITS, dequantize
from stages.errors import UserError
from stages.movi.checks import backward_direction_errors, doubts_documented_direction
from stages.movi.example import MalformedExample, parse_example
from stages.movi.schema import (
    BACKWARD_FLOW,
    FORWARD_FLOW,
    NAME,
    MoviRecord,
    SchemaError,
    decode_record,
)
from stages.movi.tfrecord import count_records, iter_records
from stages.progress import log, track

FORMAT_VERSION = 1
RESOLUTIONS = ("256x256", "128x128")
SHARD = re.compile(r"movi_e-(?P<split>[a-z]+)\.tfrecord-(?P<index>\d+)-of-(?P<count>\d+)$")
LOCK_FILE = ".movi.lock"


@dataclass(frozen=True)
class MoviConfig:
    """What ``diod data movi`` was asked: () splits means every split that has shards."""

    src: Path
    out: Path
    resolution: str = "256x256"
    splits: tuple[str, ...] = ()
    limit: int | None = None  # at most this many videos per split
    depth: bool = False


# -- finding the shards ---------------------------------------------------------------------
def _shard_pattern(split: str) -> str:
    return f"movi_e-{split}.tfrecord-*-of-*"


def shard_folder(src: Path, resolution: str) -> Path:
    """The one folder under ``src`` that holds MOVi-E shards of this resolution."""
    candidates = (src, *sorted(src.glob("*")), *sorted(src.glob(f"{resolution}/*")))
    candidates += tuple(sorted(src.glob(f"movi_e/{resolution}/*")))
    found = [d for d in candidates if d.is_dir() and any(d.glob("movi_e-*.tfrecord-*-of-*"))]
    if not found:
        looked = ", ".join(
            str(src / sub / _shard_pattern("<split>"))
            for sub in (
                "",
                "<version>",
                f"{resolution}/<version>",
                f"movi_e/{resolution}/<version>",
            )
        )
        raise UserError(f"--src {src}: no MOVi-E shards found (looked for {looked})")
    if len(found) > 1:
        raise UserError(
            f"--src {src}: shards in {len(found)} folders ({', '.join(map(str, found))}); "
            "point --src at one of them"
        )
    return found[0]


def split_shards(folder: Path, split: str) -> list[Path]:
    """A split's shards in order; a warning when some of the MMMMM are not there."""
    shards = sorted(p for p in folder.glob(_shard_pattern(split)) if SHARD.match(p.name))
    if shards:
        expected = int(SHARD.match(shards[0].name)["count"])
        if len(shards) != expected:
            log.warning(
                "%s: %d of the %d %s shards present; converting those",
                folder,
                len(shards),
                expected,
                split,
            )
    return shards


def _requested_splits(folder: Path, splits: tuple[str, ...]) -> list[str]:
    for split in splits:
        if split not in SPLITS:
            raise UserError(f"--splits {split}: unknown split (expected {', '.join(SPLITS)})")
        if not split_shards(folder, split):
            raise UserError(
                f"--splits {split}: no shards in {folder} (looked for {_shard_pattern(split)})"
            )
    return list(splits) or [s for s in SPLITS if split_shards(folder, s)]


# -- the output root --------------------------------------------------------------------------
def _settings(config: MoviConfig) -> dict[str, Any]:
    return {"format": FORMAT_VERSION, "resolution": config.resolution, "depth": config.depth}


def _open_out(config: MoviConfig) -> dict[str, Any]:
    """The record of what ``out`` holds (a new one for a new root), checked against the
    settings asked now: one root holds one conversion."""
    out = config.out
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    record_path = out / RECORD_FILE
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except ValueError as exc:
            raise UserError(f"{record_path}: unreadable JSON ({exc})") from None
        held = {k: record.get(k) for k in _settings(config)}
        if held != _settings(config):
            raise UserError(
                f"--out {out}: holds a MOVi-E conversion with other settings ({held}; asked "
                f"{_settings(config)}); use another --out"
            )
        return record
    if out.is_dir() and any(p.name != LOCK_FILE for p in out.iterdir()):
        raise UserError(f"--out {out}: not empty and not a `diod data movi` output")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create ({exc.strerror})") from None
    return {**_settings(config), "dataset": "movi_e", "splits": {}}


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One converter per output root: two would race on the same video folders."""
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"--out {out}: another `diod data movi` is writing it") from None
        yield
    finally:
        os.close(fd)


# -- one video ------------------------------------------------------------------------------
def write_video_folder(folder: Path, record: MoviRecord, source: dict[str, Any]) -> None:
    """A decoded record in the dataset layout, in ``folder`` (which must not exist)."""
    (folder / "rgb").mkdir(parents=True)
    (folder / "instances").mkdir()
    for t in range(len(record.rgb)):
        write_png(folder / "rgb" / f"{t:06d}.png", record.rgb[t])
        write_png(folder / "instances" / f"{t:06d}.png", record.segmentations[t])
    arrays = {}
    for key, (codes, value_range) in record.extras.items():
        arrays[key], arrays[f"{key}_range"] = codes, value_range
    write_npz(folder / GT_FILE, **arrays)
    meta = {"video_name": record.name, "source": source, **record.meta}
    (folder / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def _check_size(record: MoviRecord, resolution: str) -> None:
    h, w = record.rgb.shape[1:3]
    if f"{h}x{w}" != resolution:
        raise SchemaError(
            f"frames are {h}x{w}, but --resolution {resolution} was asked (the shards of "
            "the other resolution are in their own folder)"
        )


def _check_backward(record: MoviRecord) -> bool:
    """Measure backward_flow's direction (``stages.movi.checks``) into the record's meta;
    True when the documented direction is doubted."""
    if BACKWARD_FLOW not in record.extras:
        return False
    forward, backward = (dequantize(*record.extras[k]) for k in (FORWARD_FLOW, BACKWARD_FLOW))
    errors = backward_direction_errors(forward, backward)
    record.meta["backward_flow_check"] = errors
    return doubts_documented_direction(errors)


def _where(shard: Path | str, index: int) -> str:
    return f"{shard}: record {index}"


# -- a split --------------------------------------------------------------------------------
def _records(shards: list[Path], limit: int | None) -> Iterator[tuple[Path, int, bytes]]:
    n = 0
    for shard in shards:
        for index, data in enumerate(iter_records(shard)):
            yield shard, index, data
            n += 1
            if limit is not None and n >= limit:
                return


def convert_split(config: MoviConfig, folder: Path, split: str) -> dict[str, Any]:
    """Convert one split; returns its entry of ``movi.json``."""
    shards = split_shards(folder, split)
    total = sum(count_records(s) for s in shards)
    todo = total if config.limit is None else min(total, config.limit)
    split_dir = config.out / split
    split_dir.mkdir(exist_ok=True)
    for stale in split_dir.glob(".*.partial-*"):  # a killed run's half video (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    seen: dict[str, str] = {}
    doubtful: list[str] = []
    written = 0
    for shard, index, data in track(_records(shards, config.limit), f"movi {split}", todo):
        try:
            features = parse_example(data)
            names = features[NAME].bytes_values() if NAME in features else []
        except MalformedExample as exc:
            raise UserError(f"{_where(shard, index)}: malformed tf.Example ({exc})") from None
        if len(names) != 1 or not names[0]:
            raise UserError(f"{_where(shard, index)}: feature '{NAME}' missing or empty")
        name = safe_name(names[0].decode("utf-8", errors="replace")).lstrip(".")
        if not name:
            raise UserError(f"{_where(shard, index)}: feature '{NAME}' is {names[0]!r}")
        if name in seen:
            raise UserError(f"{_where(shard, index)}: video '{name}' again (first at {seen[name]})")
        seen[name] = _where(shard.name, index)
        target = split_dir / name
        if target.is_dir():
            continue
        try:
            record = decode_record(features, depth=config.depth)
            _check_size(record, config.resolution)
        except SchemaError as exc:
            raise UserError(f"{_where(shard, index)}: {exc}") from None
        if _check_backward(record):
            doubtful.append(name)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=split_dir))
            try:
                write_video_folder(staging / name, record, {"shard": shard.name, "record": index})
                publish(staging / name, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        except OSError as exc:  # a full disk, a read-only --out: the user's to fix
            raise UserError(f"{target}: cannot write ({exc.strerror or exc})") from None
        written += 1
    log.info("movi %s: %d videos written, %d already there", split, written, len(seen) - written)
    if doubtful:
        log.warning(
            "movi %s: in %d of %d videos written (first: %s) backward_flow fits the direction "
            "opposite to kubric's documented one better (meta.json 'backward_flow_check'): "
            "the GT backward flow's sign is then wrong; see docs/datasets.md",
            split,
            len(doubtful),
            written,
            doubtful[0],
        )
    return {"shards": len(shards), "videos": len(seen), "complete": len(seen) == total}


def convert_movi(config: MoviConfig) -> dict[str, Any]:
    """Convert the requested splits into ``config.out``; returns ``movi.json``'s content."""
    src = Path(config.src).expanduser()
    if not src.is_dir():
        raise UserError(
            f"--src {src}: not a directory (expected the folder of MOVi-E's TFDS shards)"
        )
    if config.resolution not in RESOLUTIONS:
        raise UserError(
            f"--resolution {config.resolution}: expected one of {', '.join(RESOLUTIONS)}"
        )
    if config.limit is not None and config.limit < 1:
        raise UserError(f"--limit {config.limit}: expected a positive number of videos")
    config = replace(config, src=src, out=Path(config.out).expanduser())
    folder = shard_folder(src, config.resolution)
    splits = _requested_splits(folder, tuple(config.splits))
    record = _open_out(config)
    with _exclusive(config.out):
        atomic_write_json(config.out / RECORD_FILE, record)  # first: a killed run resumes
        for split in splits:
            record["splits"][split] = convert_split(config, folder, split)
            atomic_write_json(config.out / RECORD_FILE, record)
    return record
