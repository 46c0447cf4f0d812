"""MOVi-E's features in a TFDS record, decoded into arrays: what the converter reads.

Keys read, with their kind (TFDS flattens nested features with "/"; the schema is that of
kubric's ``movi_e`` builder, TFDS version 1.0.0, and of TFDS's serializer, both read in
their public source):

- ``video`` (bytes_list): T PNGs (H, W, 3) uint8, the RGB frames.
- ``segmentations`` (bytes_list): T PNGs (H, W, 1) uint8, instance id per pixel,
  0 = background, id = index in ``instances`` + 1.
- ``forward_flow`` (int64_list): T*H*W*2 uint16 codes, (T, H, W, 2) row-major, channels
  (delta_row, delta_col), the motion from frame t to t+1.
- ``backward_flow`` (int64_list, optional): the same for the motion from t-1 to t.
- ``metadata/forward_flow_range``, ``metadata/backward_flow_range`` (float_list): (min, max)
  in pixels at this resolution.
- ``depth`` (bytes_list, read with ``--depth``): T PNGs (H, W, 1) uint16, distance to the
  camera centre; ``metadata/depth_range`` (float_list) its (min, max).
- ``metadata/video_name`` (bytes_list): the scene's name, the output folder's name.
- ``metadata/num_frames``, ``metadata/height``, ``metadata/width`` (int64_list): T, H, W,
  checked against every per-frame feature.
- ``instances/positions`` (float_list): (N, T, 3) world positions (which objects move);
  ``instances/is_dynamic`` (int64_list): (N,) tossed (1) or resting (0) at the start.

A flow or depth value is ``code / 65535 * (max - min) + min`` (kubric's documented
formula); the codes are kept as they are and rescaled on reading (``stages.datasets.movi``),
so the conversion is lossless. Kubric's ``Sequence(Tensor(uint16))`` flow is serialized by
TFDS as an int64_list of every value, not as PNGs; a bytes_list of per-frame PNGs
(2 channels: gray + alpha) is accepted as well, in case another export wrote it that way.
Everything else in a record (normals, object coordinates, camera, events, other instance
fields) is ignored.

Unverified without a real shard (none can be downloaded here): the byte-level layout is
taken from kubric's and TFDS's source, and exercised only on fixtures the tests write in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from stages.movi.example import Feature, MalformedExample

VIDEO = "video"
SEGMENTATIONS = "segmentations"
FORWARD_FLOW = "forward_flow"
BACKWARD_FLOW = "backward_flow"
DEPTH = "depth"
NAME = "metadata/video_name"
NUM_FRAMES = "metadata/num_frames"
HEIGHT = "metadata/height"
WIDTH = "metadata/width"
POSITIONS = "instances/positions"
IS_DYNAMIC = "instances/is_dynamic"
#: an instance moves in the world when its position changes by more than this (world units;
#: MOVi-E's scenes span about 14), at any frame, from its first frame's
MOVING_DISPLACEMENT = 0.01


def range_key(key: str) -> str:
    return f"metadata/{key}_range"


@dataclass
class MoviRecord:
    """One MOVi-E video as stored: frames, instance maps, and the quantised flow/depth codes
    with their (min, max) ranges. ``extras`` maps a stored name to (codes, range)."""

    name: str
    rgb: np.ndarray  # (T, H, W, 3) uint8
    segmentations: np.ndarray  # (T, H, W) uint8 or uint16
    extras: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


class SchemaError(ValueError):
    """A record lacks a feature or holds one of an unexpected kind, shape or dtype."""


def _get(features: Mapping[str, Feature], key: str, kind: str) -> Feature:
    try:
        feature = features[key]
    except KeyError:
        raise SchemaError(
            f"feature '{key}' missing (has: {', '.join(sorted(features)) or 'none'})"
        ) from None
    if feature.kind not in (kind, "empty"):
        raise SchemaError(f"feature '{key}' is a {feature.kind}, expected a {kind}")
    return feature


def _scalar(features: Mapping[str, Feature], key: str) -> int:
    values = _get(features, key, "int64_list").int64_values()
    if values.size != 1:
        raise SchemaError(f"feature '{key}' holds {values.size} values, expected 1")
    return int(values[0])


def decode_image(data: bytes, key: str, index: int, channels: int) -> np.ndarray:
    """A PNG of a per-frame feature as (H, W) for 1 channel, else (H, W, channels) in the
    stored channel order (OpenCV's BGR turned back to RGB, its 4-channel reading of a
    gray + alpha PNG turned back to 2 channels)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SchemaError(f"feature '{key}' frame {index}: not a decodable image")
    found = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1 and found == 1:
        return image if image.ndim == 2 else image[..., 0]
    if channels == 3 and found in (3, 4):
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB if found == 3 else cv2.COLOR_BGRA2RGB)
    if channels == 2 and found == 4 and (image[..., 0] == image[..., 2]).all():
        return np.stack([image[..., 0], image[..., 3]], axis=-1)  # gray, alpha
    raise SchemaError(
        f"feature '{key}' frame {index}: {found}-channel {image.dtype} image, expected "
        f"{channels} channel{'s' if channels > 1 else ''}"
    )


def decode_frames(
    features: Mapping[str, Feature],
    key: str,
    shape: tuple[int, int, int],
    channels: int,
    dtypes: tuple[type, ...],
) -> np.ndarray:
    """A per-frame feature as one (T, H, W[, C]) array of the expected size and dtype, from
    per-frame PNGs (bytes_list) or from every value in order (int64_list)."""
    t, h, w = shape
    want = (t, h, w) if channels == 1 else (t, h, w, channels)
    feature = features.get(key)
    if feature is not None and feature.kind == "int64_list":
        values = feature.int64_values()
        if values.size != np.prod(want):
            raise SchemaError(
                f"feature '{key}' holds {values.size} int64 values, expected "
                f"{'x'.join(map(str, want))} = {int(np.prod(want))}"
            )
        if values.size and (values.min() < 0 or values.max() > np.iinfo(dtypes[0]).max):
            raise SchemaError(
                f"feature '{key}' holds values in [{values.min()}, {values.max()}], outside "
                f"{np.dtype(dtypes[0]).name}"
            )
        return values.astype(dtypes[0]).reshape(want)
    frames = _get(features, key, "bytes_list").bytes_values()
    if len(frames) != t:
        raise SchemaError(f"feature '{key}' holds {len(frames)} images, expected {t} frames")
    out = np.stack([decode_image(data, key, i, channels) for i, data in enumerate(frames)])
    if out.dtype not in dtypes:
        expected = " or ".join(np.dtype(d).name for d in dtypes)
        raise SchemaError(f"feature '{key}' decodes to {out.dtype} images, expected {expected}")
    if out.shape != want:
        raise SchemaError(
            f"feature '{key}' decodes to shape {out.shape}, expected {want} "
            "(frames x height x width[ x channels] from metadata)"
        )
    return out


def _value_range(features: Mapping[str, Feature], key: str) -> np.ndarray:
    values = _get(features, range_key(key), "float_list").float_values()
    if values.size != 2 or not np.isfinite(values).all() or values[0] > values[1]:
        raise SchemaError(
            f"feature '{range_key(key)}' is {values.tolist()}, expected finite (min, max)"
        )
    return values


def _instances(features: Mapping[str, Feature], frames: int) -> dict[str, Any]:
    """Which instances move in the world, from their positions; {} if the record has none."""
    if POSITIONS not in features:
        return {}
    positions = _get(features, POSITIONS, "float_list").float_values()
    if positions.size % (frames * 3):
        raise SchemaError(
            f"feature '{POSITIONS}' holds {positions.size} floats, not a multiple of "
            f"{frames} frames x 3"
        )
    positions = positions.reshape(-1, frames, 3).astype(np.float64)
    moved = np.linalg.norm(positions - positions[:, :1], axis=-1).max(axis=1, initial=0.0)
    dynamic = (
        _get(features, IS_DYNAMIC, "int64_list").int64_values().tolist()
        if IS_DYNAMIC in features
        else [None] * len(positions)
    )
    if len(dynamic) != len(positions):
        raise SchemaError(
            f"feature '{IS_DYNAMIC}' has {len(dynamic)} values for {len(positions)} instances"
        )
    return {
        "instances": [
            {
                "id": i + 1,
                "max_displacement": round(float(d), 6),
                "is_dynamic": None if dyn is None else bool(dyn),
            }
            for i, (d, dyn) in enumerate(zip(moved, dynamic, strict=True))
        ],
        "moving_ids": [i + 1 for i, d in enumerate(moved) if d > MOVING_DISPLACEMENT],
    }


def decode_record(features: Mapping[str, Feature], *, depth: bool = False) -> MoviRecord:
    """The arrays of one MOVi-E record; ``SchemaError`` names the feature that is wrong."""
    try:
        name = _get(features, NAME, "bytes_list").bytes_values()
        if len(name) != 1 or not name[0]:
            raise SchemaError(f"feature '{NAME}' holds {len(name)} values, expected one name")
        t, h, w = (_scalar(features, k) for k in (NUM_FRAMES, HEIGHT, WIDTH))
        shape = (t, h, w)
        record = MoviRecord(
            name=name[0].decode("utf-8", errors="replace"),
            rgb=decode_frames(features, VIDEO, shape, 3, (np.uint8,)),
            segmentations=decode_frames(features, SEGMENTATIONS, shape, 1, (np.uint8, np.uint16)),
        )
        wanted = [FORWARD_FLOW] + [BACKWARD_FLOW] * (BACKWARD_FLOW in features)
        for key in wanted + [DEPTH] * depth:
            channels = 1 if key == DEPTH else 2
            codes = decode_frames(features, key, shape, channels, (np.uint16,))
            record.extras[key] = (codes, _value_range(features, key))
        record.meta = {"num_frames": t, "height": h, "width": w, **_instances(features, t)}
    except MalformedExample as exc:
        raise SchemaError(f"malformed protobuf ({exc})") from None
    return record
