"""Flow stage figures: accuracy (EPE) and throughput, printed for docs/flow.md.

1. EPE of the OpenCV backends against the synthetic dataset's exact GT flow (the val split
   of the default synth config, seed 0), per video and overall, beside the zero-flow EPE.
2. EPE on real data: the Middlebury 2014 "motorcycle" stereo pair shipped with scikit-image,
   left -> right treated as a flow pair (GT: dx = -disparity, dy = 0; +inf = no GT).
3. Throughput at the dataset resolution: pairs/s of the bare backend (frames already decoded
   in memory, backend built inside the timing) against the whole stage (decode in workers,
   batching, float16 Zarr writes, manifest), on the same pairs, forward flow only. The
   stage reads the videos through the `folder` adapter, so it does not add the EPE report
   it computes for synth. "ratio" = stage pairs/s / bare pairs/s, the pipeline's efficiency
   (target >= 90% for a ptlflow model); "outside" = share of the stage's wall time spent
   outside the backend's ``predict`` (measured within each stage run, so it does not depend
   on comparing two runs under different machine load).

    .venv/bin/python bench/flow.py [--videos 8] [--frames 12] [--raft-videos 4] [--raft-iters 12]
                                   [--device auto] [--skip-raft]

Timings on a shared machine are noisy: pairs/s are from the best of ``--repeats`` runs, bare
and stage runs alternate, and "outside" is the median over the stage runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch

from stages.artifacts import ArtifactStore
from stages.datasets import open_dataset
from stages.flow import FlowConfig, compute_flow
from stages.flow.backends import OpenCVBackend, PtlflowBackend, make_backend
from stages.flow.epe import endpoint_errors
from stages.synthgen import SynthConfig, generate


def synth_epe(root: Path, workspace: Path) -> None:
    print("\n## EPE vs synthetic GT flow (val split, seed 0), px")
    rows = {}
    for model in ("opencv-dis", "opencv-farneback"):
        art = compute_flow(
            ArtifactStore(workspace), FlowConfig("synth", root, model=model, backward=False)
        )
        rows[model] = art.manifest["summary"]["epe"]
    videos = sorted(rows["opencv-dis"]["videos"])
    print(f"{'video':<16}{'zero flow':>10}{'DIS':>8}{'Farneback':>11}")
    for v in videos:
        dis, fb = rows["opencv-dis"]["videos"][v], rows["opencv-farneback"]["videos"][v]
        print(f"{v:<16}{dis['zero_flow_epe']:>10.3f}{dis['epe']:>8.3f}{fb['epe']:>11.3f}")
    dis, fb = rows["opencv-dis"], rows["opencv-farneback"]
    print(f"{'overall':<16}{dis['zero_flow_epe']:>10.3f}{dis['epe']:>8.3f}{fb['epe']:>11.3f}")


def motorcycle_epe() -> None:
    print("\n## EPE on Middlebury 'motorcycle' (skimage.data.stereo_motorcycle), left -> right, px")
    left, right, disp = skimage.data.stereo_motorcycle()
    valid = np.isfinite(disp)  # +inf marks pixels without GT (the docstring says NaN)
    gt = np.stack([-np.where(valid, disp, 0), np.zeros_like(disp)])[None]  # x_right = x_left - d
    a, b = torch.from_numpy(left[None]), torch.from_numpy(right[None])
    print(f"{left.shape[0]}x{left.shape[1]}, {valid.mean():.1%} of pixels with GT, "
          f"disparity {disp[valid].min():.1f}..{disp[valid].max():.1f} px")  # fmt: skip
    print(f"{'model':<18}{'EPE dx':>8}{'EPE (dx,dy)':>13}{'bad >3px':>10}")
    zero_err, n = endpoint_errors(np.zeros_like(gt), gt, valid)
    print(f"{'zero flow':<18}{zero_err / n:>8.3f}{zero_err / n:>13.3f}{1.0:>10.1%}")
    for model in ("opencv-dis", "opencv-farneback"):
        flow = make_backend(model).predict(a, b).numpy()
        dx_err = np.abs(flow[0, 0] - gt[0, 0])[valid]
        err, n = endpoint_errors(flow, gt, valid)
        print(f"{model:<18}{dx_err.mean():>8.3f}{err / n:>13.3f}{(dx_err > 3).mean():>10.1%}")


def decoded_pairs(
    root: Path, dataset: str, n_videos: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    ds = open_dataset(dataset, root)
    out = []
    for video in ds.videos("val")[:n_videos]:
        frames = torch.from_numpy(np.stack(list(ds.iter_frames(video))))
        out.append((frames[:-1], frames[1:]))
    return out


def bare_seconds(model: str, pairs, batch: int, **backend_kwargs) -> float:
    """Build the backend and flow every pair, batched per video like the stage, from memory."""
    start = time.perf_counter()
    backend = make_backend(model, **backend_kwargs)
    for a, b in pairs:
        for i in range(0, len(a), batch):
            backend.predict(a[i : i + batch], b[i : i + batch])
    return time.perf_counter() - start


class PredictClock:
    """Total time spent inside backends' ``predict`` (wraps the classes, so the stage's own
    backend is timed too): what is left of the stage's wall time is the pipeline's."""

    def __init__(self) -> None:
        self.seconds = 0.0
        for cls in (OpenCVBackend, PtlflowBackend):
            cls.predict = self._wrap(cls.predict)

    def _wrap(self, predict):
        def timed(backend, a, b):
            start = time.perf_counter()
            try:
                return predict(backend, a, b)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def stage_seconds(workspace: Path, config: FlowConfig) -> float:
    start = time.perf_counter()
    art = compute_flow(ArtifactStore(workspace), config)
    elapsed = time.perf_counter() - start
    assert art.is_complete
    return elapsed


def throughput(
    clock: PredictClock,
    root: Path,
    work: Path,
    model: str,
    n_videos: int,
    repeats: int,
    batch: int,
    **kw,
) -> None:
    ds = open_dataset("synth", root)
    videos = ds.videos("val")[:n_videos]
    subset = work / f"subset-{n_videos}"
    if not subset.exists():  # the same videos as a dataset of their own, for the stage
        (subset / "val").mkdir(parents=True)
        for v in videos:
            (subset / "val" / v.name).symlink_to(v.extra["dir"])
    pairs = decoded_pairs(subset, "folder", n_videos)
    n_pairs = sum(len(a) for a, _ in pairs)
    bare_kwargs = {k: v for k, v in kw.items() if k in ("ckpt", "device", "precision", "iters")}
    bare_seconds(model, pairs[:1], batch, **bare_kwargs)  # warm caches and imports, untimed
    bare, stage, outside = [], [], []
    for r in range(repeats):
        bare.append(bare_seconds(model, pairs, batch, **bare_kwargs))
        config = FlowConfig("folder", subset, model=model, backward=False, batch_size=batch, **kw)
        inside = clock.seconds
        stage.append(stage_seconds(work / f"ws-{model}-{r}", config))
        outside.append(1 - (clock.seconds - inside) / stage[-1])
    b, s = n_pairs / min(bare), n_pairs / min(stage)
    h, w = pairs[0][0].shape[1:3]
    print(
        f"{model:<18}{h}x{w:<6}{n_pairs:>6}{b:>11.2f}{s:>11.2f}{s / b:>8.1%}"
        f"{float(np.median(outside)):>12.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--videos", type=int, default=8, help="synth val videos for EPE and OpenCV throughput"
    )
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument(
        "--raft-videos", type=int, default=4, help="videos for the raft_small throughput"
    )
    parser.add_argument("--raft-iters", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-raft", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cuda {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="diod-bench-flow-") as tmp:
        work = Path(tmp)
        root = generate(
            work / "synth",
            SynthConfig(seed=0, train_videos=0, val_videos=args.videos, frames=args.frames),
        )
        synth_epe(root, work / "epe")
        motorcycle_epe()
        print("\n## Throughput, forward flow only: bare backend vs the whole stage, same pairs")
        print(
            f"{'model':<18}{'size':<10}{'pairs':>6}{'bare pr/s':>11}{'stage pr/s':>11}"
            f"{'ratio':>8}{'outside':>12}"
        )
        clock = PredictClock()
        for model in ("opencv-dis", "opencv-farneback"):
            throughput(clock, root, work, model, args.videos, args.repeats, args.batch_size)
        if not args.skip_raft:
            throughput(
                clock, root, work, "raft_small", args.raft_videos, args.repeats, args.batch_size,
                ckpt=None, device=args.device, iters=args.raft_iters,
            )  # fmt: skip
            print(
                f"(raft_small: random weights, {args.raft_iters} iterations, device {args.device})"
            )


if __name__ == "__main__":
    main()
