"""Motion-mask throughput on one CPU core, at the demo size (96x320) and KITTI's (375x1242).

Input: a small synth set per size with the flow stage's opencv-dis flow (forward and
backward), i.e. the real use case. Two figures per size:
- masks: frames/s of the per-frame work (flow chunks read from Zarr, frames decoded for the
  texture test, camera fit, residual, components, split, ground contact, persistence, ids),
  best of 3 passes, by wall clock and by the process's CPU time (what a dedicated core would
  give on a shared machine);
- stage: frames/s of `compute_masks` end to end with one worker (plus GT quality and
  writing the artifact).
Target (docs/masks.md): >= 20 frames/s at 375x1242 on one core. The machine may be shared:
the load average is printed; compare sizes within one run.

    .venv/bin/python bench/masks.py [--videos 2] [--frames 10]  # the builtin segmenter
    .venv/bin/python bench/masks.py --segmenter MODEL.pt    # another segmenter model file
    .venv/bin/python bench/masks.py --device cuda           # the segmenter's network on a GPU
    .venv/bin/python bench/masks.py --segmenter none [--camera-model parallax]  # geometric

With ``--device cuda`` the features, cleaning and instances still run on the one core; only
the segmenter's network moves to the GPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import torch

from stages.artifacts import ArtifactStore
from stages.datasets import open_dataset
from stages.flow.stage import FlowConfig, compute_flow
from stages.hardware import resolve_device
from stages.masks.geometric import GeometricParams, run_masks
from stages.masks.learned.inference import LearnedMotion
from stages.masks.learned.modelfile import load_segmenter
from stages.masks.params import (
    BUILTIN_SEGMENTER,
    NO_SEGMENTER,
    InstanceParams,
    MotionParams,
    segmenter_instances,
)
from stages.masks.stage import (
    MasksConfig,
    ZarrFlowPairs,
    compute_masks,
    gray_frames,
    resolve_segmenter,
)
from stages.synthgen import SynthConfig, generate
from stages.zarrstore import FLOW_STORE

SIZES = ((96, 320), (375, 1242))


def one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)


def measure(
    base: Path,
    height: int,
    width: int,
    videos: int,
    frames: int,
    motion: MotionParams,
    segmenter: str,
    device: str,
) -> dict[str, float]:
    root = generate(
        base / f"synth-{height}x{width}",
        SynthConfig(
            seed=0, train_videos=0, val_videos=videos, frames=frames, height=height, width=width
        ),
        workers=1,  # no fork after Zarr's event-loop thread has started (second size)
    )
    store = ArtifactStore(base / f"ws-{height}x{width}")
    flow = compute_flow(
        store, FlowConfig(dataset="synth", root=root, model="opencv-dis", ckpt=None, workers=0)
    )
    ds = open_dataset("synth", root)
    paths = sorted(p for p in (flow.path / FLOW_STORE / "val").iterdir() if p.is_dir())
    if segmenter == NO_SEGMENTER:
        params, motion_of = GeometricParams(motion), None
    else:  # as the stage runs a segmenter: its model file's camera fit, no ground contact
        loaded = load_segmenter(resolve_segmenter(store, segmenter)[0])
        motion_of = LearnedMotion(loaded.model, loaded.motion, loaded.threshold, device)
        params = GeometricParams(loaded.motion, segmenter_instances(InstanceParams()))
    best = best_cpu = float("inf")
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        for path in paths:
            video = ds.video("val", path.name)
            images = gray_frames(ds, video, 0, len(video), (height, width))
            pairs = ZarrFlowPairs(str(path), None, images)
            run_masks(pairs, 0, pairs.num_frames, params, height, width, motion_of)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    start = time.perf_counter()
    config = MasksConfig(
        dataset="synth",
        flow=flow.id,
        motion=motion,
        segmenter=segmenter,
        workers=1,
        device=device,
        force=True,
    )
    art = compute_masks(store, config)
    stage = time.perf_counter() - start
    n = videos * frames
    return {
        "masks": n / best,
        "masks_cpu": n / best_cpu,
        "stage": n / stage,
        "masks_per_frame": art.manifest["summary"]["masks_per_frame"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--camera-model", default=MotionParams().camera_model)
    parser.add_argument(
        "--segmenter",
        default=BUILTIN_SEGMENTER,
        help=f"{BUILTIN_SEGMENTER} (as diod masks), a model file, or {NO_SEGMENTER}: the geometric rule",
    )
    parser.add_argument("--device", default="cpu", help="the segmenter network's: cpu, cuda")
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    geometric = args.segmenter == NO_SEGMENTER
    motion = MotionParams(camera_model=args.camera_model)
    one_core()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            (
                h,
                w,
                measure(Path(tmp), h, w, args.videos, args.frames, motion, args.segmenter, device),
            )
            for h, w in SIZES
        ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"motion masks, {args.camera_model if geometric else args.segmenter}, on one core"
        f"{f' + {device}' if not geometric and device != 'cpu' else ''} ({args.videos} videos "
        f"x {args.frames} frames per size, load {load:.1f})"
    )
    print(
        f"{'size':>10} {'masks fps':>10} {'(CPU time)':>11} {'stage fps':>10} {'masks/frame':>12}"
    )
    for h, w, r in rows:
        print(
            f"{f'{h}x{w}':>10} {r['masks']:10.1f} {r['masks_cpu']:11.1f} {r['stage']:10.1f} "
            f"{r['masks_per_frame']:12.2f}"
        )


if __name__ == "__main__":
    main()
