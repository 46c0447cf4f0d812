"""Progress reporting for long loops: a rich bar on a terminal, sparse log lines otherwise.

Stages call ``track`` and ``log``; the CLI decides (``configure``) whether output is a
terminal, plain text or silent, so library callers and tests get quiet plain logging.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("diod")
_settings = {"quiet": False, "interactive": None}
PLAIN_INTERVAL_S = 10.0


def configure(*, quiet: bool = False, verbose: int = 0) -> None:
    """Set up the ``diod`` logger for the command line."""
    _settings["quiet"] = quiet
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    log.setLevel(level)
    log.handlers.clear()
    log.propagate = False
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        log.addHandler(RichHandler(show_path=False, markup=False, rich_tracebacks=False))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)


def _interactive() -> bool:
    if _settings["interactive"] is not None:
        return bool(_settings["interactive"])
    return sys.stderr.isatty() and not _settings["quiet"]


def track(iterable: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with progress shown; a no-op wrapper when quiet."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if _settings["quiet"]:
        yield from iterable
        return
    if _interactive():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class Rate(ProgressColumn):
            """Items per second (frames, steps, videos)."""

            def render(self, task) -> Text:
                return Text(f"{task.speed:.1f}/s" if task.speed else "")

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            Rate(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=False) as progress:
            task = progress.add_task(description, total=total)
            for item in iterable:
                yield item
                progress.advance(task)
        return
    start = last = time.monotonic()
    for count, item in enumerate(iterable, 1):
        yield item
        now = time.monotonic()
        if now - last >= PLAIN_INTERVAL_S or count == total:
            last = now
            of = f"/{total}" if total else ""
            rate = count / max(now - start, 1e-9)
            log.info("%s: %d%s (%.0fs, %.1f/s)", description, count, of, now - start, rate)
