"""MOVi-E (Kubric), as ``diod data movi`` converts it from the official TFDS shards.

    <root>/movi.json                                 what was converted (resolution, splits)
    <root>/<split>/<video>/rgb/000000.png ...        frames, RGB
    <root>/<split>/<video>/instances/000000.png ...  MOVi's segmentations, 0 = background
    <root>/<split>/<video>/gt_codes.npz              GT flow (and depth) as MOVi-E stores it
    <root>/<split>/<video>/meta.json                 source record, size, instances, moving_ids

Splits are TFDS's: ``train``, ``validation`` and ``test``; ``val``, which the stages ask for
by default, reads ``validation``.

``gt_codes.npz`` keeps the shard's uint16 codes and ranges untouched (lossless, and a quarter
of float32's size over 10k videos): ``forward_flow`` (T, H, W, 2) with ``forward_flow_range``
(min, max), ``backward_flow`` likewise when the shard has it, ``depth`` (T, H, W) with
``depth_range`` when converted with ``--depth``. Kubric's conventions are turned into the
pipeline's here, in one place: values are ``code / 65535 * (max - min) + min`` pixels,
channels (delta_row, delta_col) become (dx, dy); ``forward_flow[t]`` is the motion t -> t+1,
so pair t of the GT forward flow is frame t's (the last frame's is dropped);
``backward_flow[t]`` is the motion t-1 -> t *in the same time direction* (kubric issue #152:
"for constant motion forward and backward flow are identical"), so the pipeline's backward
flow of pair t (frame t+1 back to frame t) is ``-backward_flow[t + 1]``. That sign is
documented by kubric but not checked against a real shard here (none offline).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from stages.datasets.base import Dataset, Video
from stages.datasets.folder import FolderDataset
from stages.errors import UserError

RECORD_FILE = "movi.json"
GT_FILE = "gt_codes.npz"
META_FILE = "meta.json"
SPLITS = ("train", "validation", "test")
CODE_MAX = 65535


def dequantize(codes: np.ndarray, value_range: np.ndarray) -> np.ndarray:
    """uint16 codes -> float32, kubric's ``code / 65535 * (max - min) + min``, computed in
    float64 so each value is the float32 nearest to the exact one."""
    lo, hi = (float(v) for v in value_range)
    return (codes.astype(np.float64) / CODE_MAX * (hi - lo) + lo).astype(np.float32)


def kubric_to_pairs(flow: np.ndarray) -> np.ndarray:
    """(N, H, W, 2) flow in (delta_row, delta_col) -> (N, 2, H, W) float32 in (dx, dy)."""
    return np.ascontiguousarray(flow[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)


@lru_cache(maxsize=4)
def _load_codes(path: Path, _mtime_ns: int) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _read_codes(path: Path) -> dict[str, np.ndarray]:
    """Every array of a gt_codes.npz (a few MB), cached by path and modification time: eval
    asks forward and backward flow and depth of the same video one after the other."""
    try:
        return _load_codes(path, path.stat().st_mtime_ns)
    except FileNotFoundError:
        raise UserError(f"{path}: missing (not converted by `diod data movi`?)") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None


class MoviDataset(FolderDataset):
    name = "movi"
    split_names = SPLITS

    def splits(self) -> list[str]:
        return Dataset.splits(self)  # TFDS's splits in their order, not any folder

    def _list_videos(self, split: str) -> list[Video]:
        if split == "val" and not (self.root / "val").is_dir():
            return [replace(v, split="val") for v in super()._list_videos("validation")]
        return super()._list_videos(split)

    def meta(self, video: Video) -> dict:
        path = video.extra["dir"] / META_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: missing (not converted by `diod data movi`?)") from None
        except ValueError as exc:
            raise UserError(f"{path}: unreadable JSON ({exc})") from None

    def _codes(self, video: Video, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = video.extra["dir"] / GT_FILE
        arrays = _read_codes(path)
        if key not in arrays:
            return None
        if f"{key}_range" not in arrays:
            raise UserError(f"{path}: '{key}' without its '{key}_range'")
        return arrays[key], arrays[f"{key}_range"]

    def moving_ids(self, video: Video) -> set[int] | None:
        """Instances whose world position changes during the video (meta.json)."""
        ids = self.meta(video).get("moving_ids")
        return None if ids is None else {int(i) for i in ids}

    def gt_flow(self, video: Video) -> np.ndarray:
        stored = self._codes(video, "forward_flow")
        if stored is None:
            raise UserError(f"{video.extra['dir'] / GT_FILE}: no 'forward_flow'")
        codes, value_range = stored
        return kubric_to_pairs(dequantize(codes[:-1], value_range))

    def gt_backward_flow(self, video: Video) -> np.ndarray | None:
        stored = self._codes(video, "backward_flow")
        if stored is None:
            return None
        codes, value_range = stored
        return kubric_to_pairs(-dequantize(codes[1:], value_range))

    def depth(self, video: Video) -> np.ndarray | None:
        """(T, H, W) float32 distance to the camera centre, if converted with ``--depth``."""
        stored = self._codes(video, "depth")
        return None if stored is None else dequantize(*stored)
