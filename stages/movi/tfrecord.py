"""Reading TFRecord files without TensorFlow: the container, with every checksum verified.

A TFRecord file is a plain sequence of records, each::

    uint64 length            little-endian
    uint32 masked_crc32c(length bytes)
    byte   data[length]
    uint32 masked_crc32c(data)

where ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xA282EAD8`` (mod 2**32) over the
CRC-32C (Castagnoli) checksum. CRC-32C comes from ``google-crc32c`` (a C implementation,
already required by zarr): a pure-Python CRC over the tens of megabytes of one MOVi-E record
would take seconds per video.

A bad checksum or a file that ends inside a record is a ``UserError`` naming the file and the
record's index: a corrupt download should stop the conversion, not yield garbage frames.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import google_crc32c

from stages.errors import UserError

HEADER = struct.Struct("<QI")  # length, masked CRC of the length
FOOTER = struct.Struct("<I")  # masked CRC of the data
MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    """The checksum TFRecord stores: CRC-32C, rotated right by 15 bits, plus a constant."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def _read_exact(f: BinaryIO, n: int, path: Path, index: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise UserError(
            f"{path}: record {index} is truncated ({what}: expected {n} bytes, found "
            f"{len(data)}); the file is incomplete, download it again"
        )
    return data


def _read_header(f: BinaryIO, path: Path, index: int) -> int | None:
    """The data length of the record starting here, None at a clean end of file."""
    header = f.read(HEADER.size)
    if not header:
        return None
    if len(header) != HEADER.size:
        _read_exact(f, HEADER.size - len(header), path, index, "header")  # raises
    length, crc = HEADER.unpack(header)
    if masked_crc(header[:8]) != crc:
        raise UserError(
            f"{path}: record {index} has a bad length checksum (not a TFRecord file, or "
            "corrupt); download it again"
        )
    return length


def _records(f: BinaryIO, path: Path) -> Iterator[bytes]:
    index = 0
    while (length := _read_header(f, path, index)) is not None:
        data = _read_exact(f, length, path, index, "data")
        (crc,) = FOOTER.unpack(_read_exact(f, FOOTER.size, path, index, "data checksum"))
        if masked_crc(data) != crc:
            raise UserError(
                f"{path}: record {index} has a bad data checksum (corrupt file); download it again"
            )
        yield data
        index += 1


def iter_records(path: Path) -> Iterator[bytes]:
    """The data of every record of a TFRecord file, in order, each checksum verified."""
    try:
        with open(path, "rb") as f:
            yield from _records(f, path)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None


def count_records(path: Path) -> int:
    """How many records a file holds, from the headers alone (seeking over the data), so a
    progress bar knows its total before anything is decoded."""
    count = 0
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            while (length := _read_header(f, path, count)) is not None:
                end = f.tell() + length + FOOTER.size
                if end > size:
                    raise UserError(
                        f"{path}: record {count} is truncated (expected {length} bytes of "
                        f"data, the file ends {end - size} bytes short); download it again"
                    )
                f.seek(end)
                count += 1
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return count
