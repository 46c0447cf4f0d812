"""Running a trained DIOD model over whole videos: the one inference path of export, of
in-training validation and of anything else that predicts.

How videos are run: in consecutive clips of T frames (T = the training clip length unless
told otherwise), each clip starting from a zero ConvGRU state and the fixed initial slots,
exactly as the model saw clips in training; a video whose length is not a multiple of T
ends with the clip of its last T frames, of which only the frames not yet predicted are
kept. Slots are carried within a clip, not across clips: a recurrent state carried over
hundreds of frames is a regime the model never trained in. ``clip_length=1`` runs every
frame alone (the KITTI protocol, whose test set is single images).

What a model sees is its modality's: RGB frames, or (a LiDAR model, DIOD-3D) the frame's
LiDAR sweep projected onto the same input grid, normalised as in training
(``Predictor.video_inputs``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from stages.datasets import Dataset, Video
from stages.errors import UserError
from stages.frames import crop_resize_rgb, region
from stages.hardware import autocast
from stages.lidar.projection import fill_gaps, normalise
from stages.model import DIOD


def clip_windows(n_frames: int, clip_length: int, overlap: int = 0) -> list[tuple[int, int, int]]:
    """(start, stop, first_new) of the clips covering a video: clips of T, each starting
    ``overlap`` frames before the previous one ends (tracking links slots across clips on
    the shared frames), the last one shifted back to end on the last frame (its frames
    before first_new were already predicted); a video shorter than T is one short clip."""
    if not 0 <= overlap < clip_length:
        raise ValueError(f"overlap {overlap}: expected 0 <= overlap < T = {clip_length}")
    if n_frames <= clip_length:
        return [(0, n_frames, 0)]
    step = clip_length - overlap
    windows = [
        (s, s + clip_length, s + overlap if s else 0)
        for s in range(0, n_frames - clip_length + 1, step)
    ]
    covered = windows[-1][1]
    if covered < n_frames:
        windows.append((n_frames - clip_length, n_frames, covered))
    return windows


def to_input(frame: np.ndarray, size: tuple[int, int], crop_top: float = 0.0) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, h, w) float in [0, 1] at the model's input size, the top
    ``crop_top`` of the frame left out."""
    rgb = crop_resize_rgb(frame, region(crop_top), size)
    return (
        torch.from_numpy(np.require(rgb, requirements=["C", "W"]))
        .permute(2, 0, 1)
        .float()
        .div_(255)
    )


def range_input(
    ds: Dataset,
    video: Video,
    index: int,
    size: tuple[int, int],
    crop_top: float = 0.0,
    fill: float = 0.0,
) -> torch.Tensor:
    """Frame ``index``'s LiDAR sweep as a LiDAR model's input: (4, h, w) normalised
    (x, y, z, r) on the grid of ``to_input``'s pixels, gaps filled up to ``fill`` point
    spacings (the model's ``lidar_fill``), 0 where empty."""
    metric = ds.lidar(video, index, size, region(crop_top))
    if metric is None:
        where = video.extra.get("dir", video.name)
        raise UserError(
            f"{where}: no LiDAR for frame {index}; a LiDAR model needs a sweep per frame"
        )
    maps = fill_gaps(normalise(metric), fill)
    return torch.from_numpy(np.ascontiguousarray(maps.transpose(2, 0, 1)))


def cropped_rows(map_height: int, crop_top: float) -> int:
    """Map rows standing for the cropped top of the frame."""
    return round(map_height * crop_top / (1.0 - crop_top))


def frame_map_size(input_size: tuple[int, int], crop_top: float, stride: int) -> tuple[int, int]:
    """Size of the maps of the whole frame (cropped rows included) for a model input size."""
    h, w = input_size[0] // stride, input_size[1] // stride
    return h + cropped_rows(h, crop_top), w


def full_frame(maps: torch.Tensor, crop_top: float) -> torch.Tensor:
    """Maps of the cropped view (n, K, h, w) -> maps of the whole frame: the cropped top
    rows belong to the background slot, so predictions align with the frame (and its GT)."""
    rows = cropped_rows(maps.shape[2], crop_top)
    if rows == 0:
        return maps
    top = maps.new_zeros(maps.shape[0], maps.shape[1], rows, maps.shape[3])
    top[:, -1] = 1.0
    return torch.cat([top, maps], dim=2)


@torch.no_grad()
def predict_clips(
    model: DIOD,
    inputs: Iterable[torch.Tensor],
    n_frames: int,
    clip_length: int,
    batch_size: int,
    device: torch.device,
    precision: str,
    crop_top: float = 0.0,
    overlap: int = 0,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Stream (start, first new frame, attention maps (T, K, h, w) float32 on ``device``)
    of every clip of ``clip_windows(n_frames, clip_length, overlap)``, in order, running
    ``batch_size`` clips per forward pass. ``inputs``: the model's input (C, H, W) of each
    frame in order (``Predictor.rgb_inputs``, ``Predictor.video_inputs``). Only the inputs
    of the clips in flight are held in memory. With ``crop_top`` (the top share the inputs
    leave out) the maps cover the whole frame (see ``full_frame``)."""
    windows = clip_windows(n_frames, clip_length, overlap)
    held: dict[int, torch.Tensor] = {}
    pending: list[tuple[int, int, int]] = []
    next_window = 0
    i = -1

    def run(group: list[tuple[int, int, int]]) -> Iterator[tuple[int, int, torch.Tensor]]:
        clips = torch.stack([torch.stack([held[i] for i in range(a, b)]) for a, b, _ in group])
        with autocast(device, precision):
            masks = model(clips.to(device, non_blocking=True), reconstruct=False).masks.float()
        for (a, _b, first), maps in zip(group, masks, strict=True):
            yield a, first, full_frame(maps, crop_top)

    for i, frame_input in enumerate(inputs):
        if i >= n_frames:
            break
        held[i] = frame_input
        while next_window < len(windows) and windows[next_window][1] == i + 1:
            pending.append(windows[next_window])
            next_window += 1
        if len(pending) == batch_size or (pending and next_window == len(windows)):
            yield from run(pending)
            keep_from = windows[next_window][0] if next_window < len(windows) else n_frames
            held = {k: v for k, v in held.items() if k >= keep_from}
            pending = []
    if next_window < len(windows):
        raise UserError(f"video ended after {i + 1} frames, expected {n_frames}")


def use_batch_statistics(model: nn.Module) -> None:
    """Make ``model``'s BatchNorm layers normalise with each forward pass's own batch
    statistics, as the authors' evaluation ran the model (they never call ``model.eval()``),
    without reading or updating the running statistics: a layer in train mode that does
    not track running statistics is given none by torch, so the stored ones stay as
    trained. Everything else keeps its mode."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train()
            module.track_running_stats = False


def argmax_scores(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """maps (n, K, h, w) -> argmax slot ids (n, h, w) and scores (n, K): the mean soft
    attention of each slot inside its argmax segment (0 where the segment is empty).
    Inside slot k's segment its map is the per-pixel maximum, so the sums are a scatter of
    the maxima."""
    n, k = maps.shape[:2]
    top, ids = maps.max(dim=1)
    flat_ids = ids.flatten(1)
    sums = torch.zeros(n, k, device=maps.device).scatter_add_(1, flat_ids, top.flatten(1))
    areas = torch.zeros(n, k, device=maps.device).scatter_add_(
        1, flat_ids, torch.ones_like(top.flatten(1))
    )
    return ids, torch.where(areas > 0, sums / areas.clamp(min=1), torch.zeros_like(sums))


@dataclass
class Predictor:
    """A loaded model and how to run it over videos."""

    model: DIOD
    input_size: tuple[int, int]
    crop_top: float
    clip_length: int
    batch_size: int
    device: torch.device
    precision: str

    @property
    def map_size(self) -> tuple[int, int]:
        return frame_map_size(self.input_size, self.crop_top, self.model.stride)

    @property
    def cropped_rows(self) -> int:
        """Top rows of the maps standing for the cropped top of the frame (``full_frame``)."""
        return cropped_rows(self.input_size[0] // self.model.stride, self.crop_top)

    def rgb_inputs(self, frames: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        """RGB frames (H, W, 3) uint8 as the model's inputs (an RGB model's)."""
        if self.model.config.modality != "rgb":
            raise UserError(
                f"a {self.model.config.modality} model does not run on RGB frames alone; "
                "run it on a dataset with LiDAR (diod export)"
            )
        return (to_input(frame, self.input_size, self.crop_top) for frame in frames)

    def video_inputs(self, ds: Dataset, video: Video) -> Iterator[torch.Tensor]:
        """The model's inputs over a dataset video, in order: its frames, or (a LiDAR
        model) its sweeps on the same grid."""
        if self.model.config.modality == "rgb":
            return self.rgb_inputs(ds.iter_frames(video))
        fill = self.model.config.lidar_fill
        return (
            range_input(ds, video, i, self.input_size, self.crop_top, fill)
            for i in range(len(video))
        )

    def clips(
        self, inputs: Iterable[torch.Tensor], n_frames: int, overlap: int = 0
    ) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(start, first new frame, maps (T, K, h, w)) of every clip (``predict_clips``)."""
        return predict_clips(
            self.model,
            inputs,
            n_frames,
            self.clip_length,
            self.batch_size,
            self.device,
            self.precision,
            self.crop_top,
            overlap,
        )

    def __call__(
        self, inputs: Iterable[torch.Tensor], n_frames: int
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """(first frame index, maps (n, K, h, w)) over a video's inputs, each frame once,
        in order."""
        for start, first, maps in self.clips(inputs, n_frames):
            yield first, maps[first - start :]

    def each_video(
        self, videos: Sequence[tuple[Iterable[torch.Tensor], int]]
    ) -> Iterator[Iterator[tuple[int, torch.Tensor]]]:
        """For each (inputs, n_frames) of ``videos`` in order, its stream of (first frame,
        maps) as ``__call__`` gives it; each stream must be consumed before the next.

        With clips of one frame the videos share forward passes: frames of consecutive
        videos fill each batch of ``batch_size``, as the authors batch KITTI's single images
        (8 per pass). Under ``use_batch_statistics`` the batch is what BatchNorm normalises
        over, so this is what makes such a batch; in eval mode it only saves passes.
        """
        if self.clip_length != 1:
            for frames, n in videos:
                yield self(frames, n)
            return
        shared = self(
            itertools.chain.from_iterable(frames for frames, _ in videos),
            sum(n for _, n in videos),
        )
        held: torch.Tensor | None = None  # maps of the current batch not handed out yet

        def video(n: int) -> Iterator[tuple[int, torch.Tensor]]:
            nonlocal held
            done = 0
            while done < n:
                if held is None or not len(held):
                    held = next(shared)[1]
                take = held[: n - done]
                held = held[len(take) :]
                yield done, take
                done += len(take)

        for _, n in videos:
            yield video(n)
