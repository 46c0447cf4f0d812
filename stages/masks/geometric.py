"""Geometric motion masks (paper 3.1, docs/masks.md) for a run of consecutive frames of one video.

Frame t's masks come from its forward flow t -> t+1 (pixels of frame t). The last frame
has no forward flow: with backward flow it is scored from the pair (T-1 -> T-2); without,
the masks of frame T-2 are carried to it along the forward flow. Temporal persistence
looks at the moving pixels of frames t-1 and t+1 warped onto frame t, so a run of frames
[start, stop) also computes the motion of one frame on each side (the halo): runs are
independent and can go to parallel workers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from stages.masks.instances import (
    clean,
    components,
    ground_contact_static,
    number,
    persistent,
    pull,
    push,
    split_by_flow,
)
from stages.masks.motion import PairMotion, landing, pair_motion
from stages.masks.params import InstanceParams, MotionParams, geometric_instances


@dataclass(frozen=True)
class GeometricParams:
    motion: MotionParams = field(default_factory=MotionParams)
    instances: InstanceParams = field(default_factory=lambda: geometric_instances(InstanceParams()))


class FlowPairs(Protocol):
    """Flow of one video: T frames, T-1 forward pairs, optional backward pairs."""

    num_frames: int
    has_backward: bool

    def forward(self, t: int) -> np.ndarray:
        """(2, H, W) float32 flow t -> t+1."""

    def backward(self, t: int) -> np.ndarray | None:
        """(2, H, W) float32 flow t+1 -> t, or None."""

    def image(self, t: int) -> np.ndarray | None:
        """Frame t, 8-bit gray at the flow's size, or None when the frames are not at hand."""


def frame_runs(num_frames: int, run_length: int) -> list[tuple[int, int]]:
    """Split [0, T) into runs of about ``run_length`` frames.

    The last frame may need the finished masks of the one before it (no backward flow),
    so a run never consists of the last frame alone.
    """
    run_length = max(2, run_length)
    runs = [(a, min(a + run_length, num_frames)) for a in range(0, num_frames, run_length)]
    if len(runs) > 1 and runs[-1][1] - runs[-1][0] == 1:
        runs[-2:] = [(runs[-2][0], num_frames)]
    return runs


def pair_of_frame(flows: FlowPairs, t: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(flow from frame t, flow back to it) or None when frame t has no outgoing flow."""
    last_pair = flows.num_frames - 2
    if t <= last_pair:
        return flows.forward(t), flows.backward(t)
    if flows.has_backward:
        return flows.backward(last_pair), flows.forward(last_pair)
    return None


#: moving pixels of frame t of a video: (flows, t) -> PairMotion, None where frame t has no
#: outgoing flow (the last frame without backward flow)
MotionOf = Callable[[FlowPairs, int], "PairMotion | None"]


def geometric_motion(params: MotionParams) -> MotionOf:
    """Frame t's motion by the camera-motion fit and thresholds (``motion.pair_motion``)."""

    def motion_of(flows: FlowPairs, t: int) -> PairMotion | None:
        pair = pair_of_frame(flows, t)
        if pair is None:
            return None
        return pair_motion(pair[0], pair[1], params, image=flows.image(t))

    return motion_of


def run_masks(
    flows: FlowPairs,
    start: int,
    stop: int,
    params: GeometricParams,
    height: int,
    width: int,
    motion_of: MotionOf | None = None,
) -> np.ndarray:
    """Instance ids (stop - start, H, W) uint16 for frames [start, stop) of a video; the
    moving pixels by ``motion_of`` (default: ``geometric_motion(params.motion)``)."""
    motion_of = motion_of or geometric_motion(params.motion)
    out = np.zeros((stop - start, height, width), np.uint16)
    last_pair = flows.num_frames - 2
    if last_pair < 0:  # a one-frame video has no motion to see
        return out
    ip = params.instances
    motions: dict[int, PairMotion] = {}
    cleaned: dict[int, np.ndarray] = {}
    #: t -> where frame t's pixels land in frame t-1, taken while pair t-1's backward flow
    #: is at hand (converting it again later costs more than keeping the maps)
    lands_back: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for t in range(max(start - 1, 0), min(stop + 1, flows.num_frames)):
        motion = motion_of(flows, t)
        if motion is not None:
            motions[t] = motion
            cleaned[t] = clean(motion.moving, ip)
        if flows.has_backward and t <= min(last_pair, stop - 2):
            lands_back[t + 1] = landing(flows.backward(t))
    for t in range(start, stop):
        if t not in motions:  # last frame without backward flow: carry frame T-2 over
            if t == start:
                raise ValueError("a run cannot start at the last frame without backward flow")
            carried = push(out[t - 1 - start], flows.forward(last_pair))
            out[t - start] = number(carried, ip.min_area, ip.max_masks)
            continue
        labels = components(cleaned[t], ip.min_area)
        labels, boxes = split_by_flow(labels, motions[t].relative_flow, ip)
        static = ground_contact_static(
            labels, boxes, motions[t].relative_flow, motions[t].confident, ip
        )
        neighbours = []
        if t + 1 in cleaned and t <= last_pair:
            neighbours.append(pull(cleaned[t + 1], motions[t].lands))
        if t - 1 in cleaned:
            if flows.has_backward:
                neighbours.append(pull(cleaned[t - 1], lands_back[t]))
            else:
                neighbours.append(push(cleaned[t - 1], flows.forward(t - 1)))
        keep = persistent(labels, neighbours, ip.persist_frac) & ~static
        out[t - start] = number(labels, ip.min_area, ip.max_masks, keep)
    return out
