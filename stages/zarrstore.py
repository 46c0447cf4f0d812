"""Zarr v3 payloads: one store per artifact, a group per split, a group per video in it,
one chunk per frame (``<artifact>/<store>/<split>/<video>/<array>``).

A video's group is written in the artifact's staging area as a standalone store and renamed
into ``<artifact>/<store>/<split>/<video>/`` when done. In Zarr v3 a group's children are found by
listing its directory, so the rename is what makes the video appear, all at once: readers and
resumed runs never see a half-written video, and shards writing different videos of one
artifact never collide.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from stages.artifacts import Artifact, ArtifactWriter, atomic_write_json
from stages.errors import UserError

# The payload stores of the stages that write Zarr, named once for writers and readers alike.
FLOW_STORE = "flow.zarr"
MASKS_STORE = "masks.zarr"
PREDICTIONS_STORE = "predictions.zarr"

GROUP_METADATA = {"zarr_format": 3, "node_type": "group", "attributes": {}}


def compressor(dtype: np.dtype) -> BloscCodec:
    """zstd through Blosc; byte-shuffle helps float16 flow, bit-shuffle sparse label maps."""
    shuffle = BloscShuffle.bitshuffle if np.dtype(dtype).kind in "ui" else BloscShuffle.shuffle
    return BloscCodec(cname="zstd", clevel=3, shuffle=shuffle)


def video_key(store: str, split: str, video: str) -> str:
    return f"{store}/{split}/{video}"


def has_video(writer: ArtifactWriter, store: str, split: str, video: str) -> bool:
    return writer.has_item(f"{video_key(store, split, video)}/zarr.json")


@contextlib.contextmanager
def write_video(
    writer: ArtifactWriter, store: str, split: str, video: str, attrs: Mapping[str, Any]
) -> Iterator[zarr.Group]:
    """A fresh group for one video, published atomically when the block succeeds."""
    for parent in (writer.path / store, writer.path / store / split):
        parent.mkdir(parents=True, exist_ok=True)
        if not (parent / "zarr.json").exists():
            atomic_write_json(parent / "zarr.json", GROUP_METADATA)
    with writer.staging(video_key(store, split, video)) as tmp:
        group = zarr.open_group(store=str(tmp), mode="w", zarr_format=3, attributes=dict(attrs))
        yield group


def frame_array(
    group: zarr.Group,
    name: str,
    shape: tuple[int, ...],
    dtype: Any,
    attrs: Mapping[str, Any] | None = None,
) -> zarr.Array:
    """An array whose first axis is time, one chunk per frame, fill value 0."""
    return group.create_array(
        name,
        shape=shape,
        chunks=(1, *shape[1:]),
        dtype=dtype,
        fill_value=0,
        compressors=compressor(np.dtype(dtype)),
        attributes=dict(attrs or {}),
    )


def video_names(artifact: Artifact, store: str, split: str) -> list[str]:
    """Videos of a split present in the store, sorted by name."""
    path = artifact.path / store / split
    return (
        sorted(p.name for p in path.iterdir() if (p / "zarr.json").exists())
        if path.is_dir()
        else []
    )


def open_video(artifact: Artifact, store: str, split: str, video: str) -> zarr.Group:
    path = artifact.path / store / split / video
    if not (path / "zarr.json").exists():
        raise UserError(
            f"{artifact.stage} artifact {artifact.id} has no video '{split}/{video}' ({path})"
        )
    return zarr.open_group(store=str(path), mode="r", zarr_format=3)


def store_path(artifact: Artifact, store: str) -> Path:
    return artifact.path / store
