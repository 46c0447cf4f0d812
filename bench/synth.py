"""Time `diod data synth` on the default set (96 + 8 videos x 12 frames, 96x320) and
summarise what it made (object sizes, static share, residual flow of moving objects).

    .venv/bin/python bench/synth.py [--workers 1 2] [--world street]

For the street world the residual flow of moving objects is also given per role (walking,
crossing cars, ...) and per camera kind (driving, still).

Timings on a shared 2-core machine are noisy: compare the worker counts of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from stages.synthgen import WORLDS, generate


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def summarise(root: Path) -> dict:
    sizes, residuals, moving, static, counts = [], [], 0, 0, []
    groups: dict[str, list[float]] = {}  # street world: per role and per camera kind
    for meta_path in sorted(root.glob("*/*/meta.json")):
        meta = json.loads(meta_path.read_text())
        frame_px = meta["height"] * meta["width"]
        counts.append(len(meta["objects"]))
        for obj in meta["objects"]:
            sizes.append(max(obj["visible_px"]) / frame_px)
            if obj["moving"]:
                moving += 1
                pairs = [r for r in obj["residual_flow_px"] if r is not None]
                residuals += pairs
                if "role" in obj:
                    groups.setdefault(f"role {obj['role']}", []).extend(pairs)
                    groups.setdefault(f"camera {meta['camera']['kind']}", []).extend(pairs)
            else:
                static += 1
    pct = (5, 50, 95)
    summary = {
        "videos": len(counts),
        "objects_per_video": [min(counts), float(np.mean(counts)), max(counts)],
        "static_share": static / (static + moving),
        "largest_area_pct_p5_p50_p95_max": [*(np.percentile(sizes, pct) * 100), max(sizes) * 100],
        "moving_residual_px_p5_p50_p95_max": [*np.percentile(residuals, pct), max(residuals)],
    }
    for name, values in sorted(groups.items()):
        v = np.asarray(values)
        in_range = float(((v >= 0.5) & (v <= 3)).mean())
        summary[f"{name}: pairs, residual px p5/p50/p95, share in 0.5-3 px"] = [
            len(v),
            *np.percentile(v, pct),
            in_range,
        ]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--world", choices=list(WORLDS), default=next(iter(WORLDS)))
    args = parser.parse_args()
    config = WORLDS[args.world]()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores: > 1 means contention)")
    scratch = Path(tempfile.mkdtemp(prefix="bench-synth-"))
    try:
        out = None
        for workers in args.workers:
            out = scratch / f"w{workers}"
            cpu, start = _cpu_seconds(), time.perf_counter()
            generate(out, config, workers=workers)
            took, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
            n = config.train_videos + config.val_videos
            print(
                f"workers={workers}: {took:.1f} s wall, {cpu:.1f} s CPU for {n} videos x "
                f"{config.frames} frames {config.height}x{config.width} ({took / n:.2f} s/video)"
            )
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
        print(f"on disk: {size:.0f} MiB")
        for key, value in summarise(out).items():
            shown = (
                [round(float(v), 2) for v in value] if isinstance(value, list) else round(value, 3)
            )
            print(f"{key}: {shown}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
