"""``diod flow --model gt``: a dataset's own ground-truth flow as a flow artifact.

Everything downstream reads flow artifacts only, so this is how a method runs on exact flow:
the masks stage and the segmenter on the synthetic worlds' rendered flow (both directions)
or MOVi's, to tell the flow's error from the method's (docs/masks.md). Frames are not read;
``--size`` resizes the fields as the estimated flow would be (bilinear, vectors scaled).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from stages.artifacts import ArtifactWriter
from stages.datasets import Dataset, Video
from stages.errors import UserError
from stages.flow.epe import resize_flow
from stages.progress import track
from stages.zarrstore import FLOW_STORE, frame_array, write_video

if TYPE_CHECKING:
    from stages.flow.stage import Job

Size = tuple[int, int]


def ground_truth_pairs(
    dataset: Dataset, key: str, video: Video, backward: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """(forward, backward or None) ground-truth flow of a video, (T-1, 2, H, W) float32; one
    error line naming the video when the dataset has none."""
    forward = dataset.gt_flow(video)
    if forward is None:
        raise UserError(f"--model gt: {dataset.name} has no ground-truth flow ({key})")
    back = dataset.gt_backward_flow(video) if backward else None
    if backward and back is None:
        raise UserError(
            f"--model gt: {key} has no ground-truth backward flow (a synth set made before "
            "the generator rendered it, or a dataset without it): regenerate it, or pass "
            "--no-backward"
        )
    return forward, back


def copy_ground_truth(
    writer: ArtifactWriter,
    dataset: Dataset,
    jobs: Sequence[Job],
    attrs_of: Callable[[Job, Size, Size], dict[str, Any]],
    size: Size | None,
    backward: bool,
) -> None:
    """Write each job's ground-truth flow (float16, at ``size`` when given) into the
    artifact, one video published at a time; ``attrs_of(job, (h, w), source_size)`` gives a
    video's group attributes, as for estimated flow."""
    for job in track(jobs, f"flow gt, {len(jobs)} videos"):
        forward, back = ground_truth_pairs(dataset, job.key, job.video, backward)
        source = tuple(forward.shape[-2:])
        target = size or source
        attrs = attrs_of(job, target, source)
        with write_video(writer, FLOW_STORE, job.split, job.video.name, attrs) as group:
            for name, flow, pair in (
                ("forward", forward, "t -> t+1"),
                ("backward", back, "t+1 -> t"),
            ):
                if flow is None:
                    continue
                array = frame_array(group, name, (len(flow), 2, *target), "float16", {"pair": pair})
                array[:] = resize_flow(flow, target).astype(np.float16)
        writer.record(job.key, {"frames": len(job.video), "pairs": len(forward)})
