"""Decoding a serialized ``tf.train.Example`` from the protobuf wire format, lazily.

The messages involved (tensorflow/core/example/{example,feature}.proto)::

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }     # entries: key = 1, value = 2
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                             Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

Why by hand rather than the ``protobuf`` runtime with a descriptor: a MOVi-E record is tens
of megabytes, mostly features the converter never reads (normals, object coordinates), and
its flow is one Int64List of millions of values. Here a feature is only located (a
memoryview, no copy) until it is asked for, and packed varints are decoded with numpy in a
few vectorised passes, instead of one Python object per value. It also keeps the converter
off protobuf's descriptor-building API, which has changed between major versions. The tests
encode their fixtures with the protobuf runtime, so this decoder is checked against it.

Both the packed and the unpacked encodings of repeated numbers are accepted (a writer may
use either), and fields this module does not know are skipped, as protobuf requires.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
KINDS = {1: "bytes_list", 2: "float_list", 3: "int64_list"}


class MalformedExample(ValueError):
    """The bytes are not a well-formed tf.train.Example (the caller names the record)."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``pos``."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise MalformedExample("message ends inside a varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise MalformedExample("varint longer than 10 bytes")


def fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of each field of a message, in order; a
    length-delimited value is a memoryview into ``buf``, any other an int."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == VARINT:
            value, pos = _varint(buf, pos)
        elif wire == LENGTH:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise MalformedExample(
                    f"field {number} runs {pos + size - len(buf)} bytes past the end"
                )
            value, pos = buf[pos : pos + size], pos + size
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if pos + size > len(buf):
                raise MalformedExample(f"field {number} runs past the end")
            value, pos = int.from_bytes(buf[pos : pos + size], "little"), pos + size
        else:
            raise MalformedExample(f"field {number} has unsupported wire type {wire}")
        yield number, wire, value


def decode_varints(buf: memoryview) -> np.ndarray:
    """Packed varints -> int64 values, vectorised: each byte's 7 payload bits are shifted by
    its place within its varint and the places summed per varint (their bits never overlap).
    """
    data = np.frombuffer(buf, np.uint8)
    if data.size == 0:
        return np.zeros(0, np.int64)
    if data[-1] & 0x80:
        raise MalformedExample("packed varints end inside a value")
    ends = np.flatnonzero(data < 0x80)
    if ends.size == data.size:  # every value below 128: one byte each
        return data.astype(np.int64)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 10:
        raise MalformedExample("varint longer than 10 bytes")
    place = np.arange(data.size) - np.repeat(starts, lengths)
    parts = (data & 0x7F).astype(np.uint64) << (7 * place).astype(np.uint64)
    return np.add.reduceat(parts, starts).view(np.int64)


@dataclass(frozen=True)
class Feature:
    """One feature of an Example: its kind and its undecoded list message."""

    kind: str  # "bytes_list", "float_list", "int64_list" or "empty" (no kind set)
    message: memoryview

    def _values(self) -> Iterator[tuple[int, int | memoryview]]:
        for number, wire, value in fields(self.message):
            if number == 1:
                yield wire, value

    def bytes_values(self) -> list[bytes]:
        return [bytes(v) for w, v in self._values() if w == LENGTH]

    def int64_values(self) -> np.ndarray:
        parts = []
        for wire, value in self._values():
            if wire == LENGTH:
                parts.append(decode_varints(value))
            elif wire == VARINT:  # unpacked: one field per value
                parts.append(np.array([value], np.uint64).view(np.int64))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def float_values(self) -> np.ndarray:
        parts = []
        for wire, value in self._values():
            if wire == LENGTH:
                if len(value) % 4:
                    raise MalformedExample(f"packed floats of {len(value)} bytes")
                parts.append(np.frombuffer(value, "<f4"))
            elif wire == FIXED32:
                parts.append(np.array([value], np.uint32).view("<f4"))
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def _feature(message: memoryview) -> Feature:
    kind, payload = "empty", memoryview(b"")
    for number, wire, value in fields(message):
        if number in KINDS and wire == LENGTH:
            kind, payload = KINDS[number], value  # a oneof: the last one set wins
    return Feature(kind, payload)


def parse_example(data: bytes | memoryview) -> dict[str, Feature]:
    """The features of a serialized Example by key, located but not decoded."""
    features: dict[str, Feature] = {}
    for number, wire, message in fields(memoryview(data)):
        if number != 1 or wire != LENGTH:
            continue
        for entry_number, entry_wire, entry in fields(message):
            if entry_number != 1 or entry_wire != LENGTH:
                continue
            key, value = None, memoryview(b"")
            for n, w, v in fields(entry):
                if n == 1 and w == LENGTH:
                    key = bytes(v).decode("utf-8", errors="replace")
                elif n == 2 and w == LENGTH:
                    value = v
            if key is None:
                raise MalformedExample("a feature map entry without a key")
            features[key] = _feature(value)
    return features
