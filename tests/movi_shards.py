"""MOVi-E TFRecord shards written from scratch, in the feature schema of kubric's TFDS
``movi_e`` builder, for the converter's tests.

tf.Example bytes come from the ``protobuf`` runtime (messages declared below with the field
numbers of tensorflow's example.proto / feature.proto), not from the converter's own
decoder's counterpart, so the tests check that decoder against an independent encoder.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from stages.movi.tfrecord import masked_crc

F = descriptor_pb2.FieldDescriptorProto


@lru_cache(maxsize=1)
def example_class():
    """tf.train.Example as a protobuf message class, declared by hand."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="movi_fixture_example.proto", package="fixture", syntax="proto3"
    )

    def add(message, name, number, kind, label=F.LABEL_OPTIONAL, type_name="", oneof=None):
        f = message.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            f.type_name = type_name
        if oneof is not None:
            f.oneof_index = oneof
        return f

    for name, kind in (("BytesList", F.TYPE_BYTES), ("FloatList", F.TYPE_FLOAT)):
        add(proto.message_type.add(name=name), "value", 1, kind, F.LABEL_REPEATED)
    add(proto.message_type.add(name="Int64List"), "value", 1, F.TYPE_INT64, F.LABEL_REPEATED)
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(("bytes_list", "float_list", "int64_list"), 1):
        type_name = ".fixture." + "".join(p.capitalize() for p in name.split("_"))
        add(feature, name, number, F.TYPE_MESSAGE, type_name=type_name, oneof=0)
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    add(entry, "key", 1, F.TYPE_STRING)
    add(entry, "value", 2, F.TYPE_MESSAGE, type_name=".fixture.Feature")
    add(
        features,
        "feature",
        1,
        F.TYPE_MESSAGE,
        F.LABEL_REPEATED,
        type_name=".fixture.Features.FeatureEntry",
    )
    example = proto.message_type.add(name="Example")
    add(example, "features", 1, F.TYPE_MESSAGE, type_name=".fixture.Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("fixture.Example"))


def encode_example(features: dict[str, tuple[str, list]]) -> bytes:
    """{key: (kind, values)} with kind bytes_list / float_list / int64_list -> bytes."""
    example = example_class()()
    for key, (kind, values) in features.items():
        getattr(example.features.feature[key], kind).value.extend(values)
    return example.SerializeToString()


def tfrecord(records: list[bytes]) -> bytes:
    out = b""
    for data in records:
        length = struct.pack("<Q", len(data))
        out += length + struct.pack("<I", masked_crc(length))
        out += data + struct.pack("<I", masked_crc(data))
    return out


def png(image: np.ndarray) -> bytes:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


@dataclass
class FakeVideo:
    """One video's content, as MOVi-E holds it, and the float flow its codes quantise."""

    name: str
    rgb: np.ndarray  # (T, H, W, 3) uint8
    segmentations: np.ndarray  # (T, H, W) uint8
    forward: np.ndarray  # (T, H, W, 2) float64, (delta_row, delta_col)
    backward: np.ndarray
    depth: np.ndarray  # (T, H, W) float64
    positions: np.ndarray  # (N, T, 3)
    dynamic: list[int]
    codes: dict[str, tuple[np.ndarray, tuple[float, float]]] = field(default_factory=dict)


def quantise(values: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Kubric's ``convert_float_to_uint16`` over a video's min..max, as float32 bounds."""
    lo, hi = float(np.float32(values.min())), float(np.float32(values.max()))
    return np.round((values - lo) / (hi - lo) * 65535).astype(np.uint16), (lo, hi)


def fake_video(name: str, seed: int, frames: int = 3, size: int = 128) -> FakeVideo:
    rng = np.random.default_rng(seed)
    shape = (frames, size, size)
    seg = np.zeros(shape, np.uint8)
    for i in range(1, 4):
        r, c = rng.integers(0, size - 20, 2)
        seg[:, r : r + 20, c : c + 20] = i
    video = FakeVideo(
        name=name,
        rgb=rng.integers(0, 256, (*shape, 3), dtype=np.uint8),
        segmentations=seg,
        forward=rng.normal(0, 3, (*shape, 2)),
        backward=rng.normal(0, 3, (*shape, 2)),
        depth=rng.uniform(2, 30, shape),
        positions=np.repeat(rng.normal(0, 3, (3, 1, 3)), frames, axis=1),
        dynamic=[0, 1, 0],
    )
    video.positions[1, :, 0] += np.linspace(0, 2, frames)  # instance 2 moves, 1 and 3 rest
    for key in ("forward", "backward", "depth"):
        video.codes[key] = quantise(getattr(video, key))
    return video


def movi_features(video: FakeVideo, drop: tuple[str, ...] = (), flow_as_png=False) -> dict:
    """The record of one video in MOVi-E's feature schema (plus features the converter
    ignores, as a real record has them)."""
    t, h, w = video.segmentations.shape
    forward, forward_range = video.codes["forward"]
    backward, backward_range = video.codes["backward"]
    depth, depth_range = video.codes["depth"]
    features = {
        "metadata/video_name": ("bytes_list", [video.name.encode()]),
        "metadata/num_frames": ("int64_list", [t]),
        "metadata/height": ("int64_list", [h]),
        "metadata/width": ("int64_list", [w]),
        "metadata/num_instances": ("int64_list", [len(video.dynamic)]),
        "metadata/forward_flow_range": ("float_list", list(forward_range)),
        "metadata/backward_flow_range": ("float_list", list(backward_range)),
        "metadata/depth_range": ("float_list", list(depth_range)),
        "background": ("bytes_list", [b"sky_hdri"]),
        "video": ("bytes_list", [png(f) for f in video.rgb]),
        "segmentations": ("bytes_list", [png(s) for s in video.segmentations]),
        "forward_flow": ("int64_list", forward.ravel().tolist()),
        "backward_flow": ("int64_list", backward.ravel().tolist()),
        "depth": ("bytes_list", [png(d) for d in depth]),
        "normal": ("bytes_list", [png(np.full((h, w, 3), 30000, np.uint16))] * t),
        "instances/positions": ("float_list", video.positions.ravel().tolist()),
        "instances/is_dynamic": ("int64_list", video.dynamic),
        "instances/mass": ("float_list", [1.0] * len(video.dynamic)),
        "camera/focal_length": ("float_list", [35.0]),
        "events/collisions/frame": ("int64_list", [1, 2]),
    }
    if flow_as_png:
        features["forward_flow"] = ("bytes_list", [gray_alpha_png(f) for f in forward])
    for key in drop:
        del features[key]
    return features


def gray_alpha_png(image: np.ndarray) -> bytes:
    """A 16-bit gray + alpha PNG of (H, W, 2) uint16, which OpenCV cannot write."""
    import zlib

    h, w, _ = image.shape
    rows = b"".join(b"\x00" + image[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def write_shards(
    folder: Path, split: str, videos: list[list[bytes]], resolution: str = "128x128"
) -> list[Path]:
    """TFDS's layout: ``folder/movi_e/<resolution>/1.0.0/movi_e-<split>.tfrecord-i-of-n``,
    one shard per inner list of serialized examples."""
    version = folder / "movi_e" / resolution / "1.0.0"
    version.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, records in enumerate(videos):
        path = version / f"movi_e-{split}.tfrecord-{i:05d}-of-{len(videos):05d}"
        path.write_bytes(tfrecord(records))
        paths.append(path)
    return paths
