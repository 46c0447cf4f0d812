"""The segmenter's training examples on disk, read back memory-mapped.

Why on disk: ``make segmenter`` trains on ten flow artifacts at three frame sizes, about
18 GB of float16 features; held in memory they decided the machine the segmenter needs
(17.6 GiB of the process's own memory at the peak, measured). Memory-mapped, a training
step reads only the crops it samples, and the pages the kernel keeps are a cache it can
drop under pressure. A resumed run reads the examples back instead of computing them again.

Layout of one store (a directory): per frame size HxW, ``features-HxW.f16`` (raw float16,
(N, C, H, W) in C order) and ``targets-HxW.u8`` (raw uint8, (N, H, W)); ``index.json``,
written last, holds the channel count, the frames per size and each example's size and
row in the order they were written (the order training samples from).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from stages.artifacts import atomic_write_json, read_json
from stages.masks.learned.examples import Example

INDEX = "index.json"


def _files(directory: Path, size: str) -> tuple[Path, Path]:
    return directory / f"features-{size}.f16", directory / f"targets-{size}.u8"


def write_examples(directory: Path, examples: Iterable[Example]) -> int:
    """Append each example to the files of its frame size in ``directory`` (an empty
    directory: publish it atomically around this call); returns how many were written."""
    order: list[tuple[str, int]] = []
    counts: dict[str, int] = {}
    channels = 0
    files = {}
    with ExitStack() as stack:
        for features, target in examples:
            size = f"{target.shape[0]}x{target.shape[1]}"
            if size not in files:
                files[size] = [stack.enter_context(open(p, "wb")) for p in _files(directory, size)]
                counts[size] = 0
            channels = features.shape[0]
            features_file, targets_file = files[size]
            features_file.write(np.ascontiguousarray(features, np.float16).tobytes())
            targets_file.write(np.ascontiguousarray(target, np.uint8).tobytes())
            order.append((size, counts[size]))
            counts[size] += 1
    atomic_write_json(directory / INDEX, {"channels": channels, "counts": counts, "order": order})
    return len(order)


def is_complete(directory: Path) -> bool:
    return (directory / INDEX).is_file()


def open_examples(directory: Path) -> list[Example]:
    """The examples of a store as read-only memory-mapped views, in the order written."""
    index = read_json(directory / INDEX)
    channels = index["channels"]
    arrays = {}
    for size, count in index["counts"].items():
        height, width = (int(v) for v in size.split("x"))
        features, targets = _files(directory, size)
        arrays[size] = (
            np.memmap(features, np.float16, "r", shape=(count, channels, height, width)),
            np.memmap(targets, np.uint8, "r", shape=(count, height, width)),
        )
    return [(arrays[size][0][row], arrays[size][1][row]) for size, row in index["order"]]
