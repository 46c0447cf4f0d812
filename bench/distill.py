"""Cost of the distillation-specific work per training step, outside the model.

Prints the median time of teacher pseudo-labels (ours against one labelling call per
(frame, slot), OpenCV and scipy), the motion-mask filter, the strong view and the EMA
update, at the reference's map sizes and batch (B=8 clips of T=5 frames, K=45). Teacher maps
are synthetic: smooth random logits upsampled to the map size, so that each frame holds a
chosen number of regions (``--cell``: side of a random blob in map pixels).

    .venv/bin/python bench/distill.py [--device cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch
from scipy import ndimage

from stages.distill.augment import strong_view
from stages.distill.ema import EmaTeacher
from stages.distill.motion_filter import filter_motion_masks
from stages.distill.pseudolabels import PseudoLabelConfig, teacher_candidates
from stages.train.config import DistillSettings


def median_ms(fn, device: torch.device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def teacher_maps(frames: int, slots: int, size: tuple[int, int], cell: int, device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    coarse = (max(1, size[0] // cell), max(1, size[1] // cell))
    logits = 4 * torch.randn(frames, slots, *coarse, generator=generator)
    logits[:, -1] += 2.0  # a background slot that covers most of the frame, as trained
    logits = torch.nn.functional.interpolate(logits, size, mode="bilinear")
    return logits.softmax(dim=1).to(device)


def per_slot_loop(maps: torch.Tensor, config: PseudoLabelConfig, backend: str) -> int:
    """The straightforward alternative: one labelling call per (frame, slot) on the CPU."""
    background = maps.shape[1] - 1
    slot = maps.max(1).indices.cpu().numpy()
    w_fg = (1 - maps[:, background]).float().cpu().numpy()
    floor = config.min_area_fraction * slot[0].size  # the same map size for every frame
    kept = 0
    for f in range(slot.shape[0]):
        for s in np.unique(slot[f]):
            if s == background:
                continue
            binary = slot[f] == s
            if backend == "opencv":
                count, regions = cv2.connectedComponents(binary.view(np.uint8), connectivity=4)
            else:
                regions, count = ndimage.label(binary)
                count += 1
            area = np.bincount(regions.ravel(), minlength=count)
            inside = np.bincount(regions.ravel(), weights=w_fg[f].ravel(), minlength=count)
            score = inside / np.maximum(area, 1)
            kept += int(((area > floor) & (score > config.threshold))[1:].sum())
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch/OpenCV threads (0: keep)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    print(f"device {device}, torch threads {torch.get_num_threads()}, repeats {args.repeats}")

    batch, length, slots = 8, 5, 45
    config = PseudoLabelConfig()
    cases = (
        ("96x320 input B=2", 2, (24, 80), (12, 4)),
        ("KITTI maps B=8", batch, (92, 312), (46, 16)),
        ("TRI-PD maps B=8", batch, (120, 242), (46, 16)),
    )
    for name, clips, size, cells in cases:
        for cell in cells:
            maps = teacher_maps(clips * length, slots, size, cell, device)
            labels = teacher_candidates(maps, config)
            regions = int(
                teacher_candidates(
                    maps, PseudoLabelConfig(threshold=0.0, min_area_fraction=0.0)
                ).valid.sum()
            )
            ours = median_ms(lambda m=maps: teacher_candidates(m, config), device, args.repeats)
            one = median_ms(
                lambda m=maps: teacher_candidates(m, PseudoLabelConfig(connection="one-to-one")),
                device,
                args.repeats,
            )
            loops = {
                backend: median_ms(lambda m=maps, b=backend: per_slot_loop(m, config, b), device, 3)
                for backend in ("opencv", "scipy")
            }
            print(
                f"pseudo-labels {name}, maps {size[0]}x{size[1]}, {clips * length} frames, "
                f"K={slots}, {regions / (clips * length):.0f} regions/frame ({int(labels.valid.sum())} kept): "
                f"ours {ours:.1f} ms, one-to-one {one:.1f} ms, per-slot loop OpenCV "
                f"{loops['opencv']:.1f} ms, scipy {loops['scipy']:.1f} ms"
            )

    masks = torch.zeros(batch * length, 12, 92, 312, dtype=torch.bool, device=device)
    for m in range(12):
        masks[:, m, 6 * m : 6 * m + 20, 20 * m : 20 * m + 30] = True
    valid = torch.ones(batch * length, 12, dtype=torch.bool, device=device)
    w_fg = torch.rand(batch * length, 92, 312, device=device)
    ms = median_ms(
        lambda: filter_motion_masks(masks, valid, w_fg, PseudoLabelConfig().threshold),
        device,
        args.repeats,
    )
    print(f"motion filter 40 frames x 12 masks at 92x312: {ms:.2f} ms")

    for size in ((96, 320), (368, 1248)):
        clips = torch.rand(batch, length, 3, *size, device=device)
        generator = torch.Generator().manual_seed(0)
        ms = median_ms(lambda c=clips, g=generator: strong_view(c, g), device, args.repeats)
        print(f"strong view B={batch} T={length} {size[0]}x{size[1]}: {ms:.1f} ms")

    from torchvision.models import resnet18

    student = resnet18().to(device)
    teacher = EmaTeacher(student, keep_rate=DistillSettings().ema)
    count = sum(p.numel() for p in student.parameters()) / 1e6
    ms = median_ms(lambda: teacher.update(student), device, args.repeats)
    print(f"EMA update, torchvision ResNet-18 ({count:.1f} M parameters + BN buffers): {ms:.2f} ms")


if __name__ == "__main__":
    main()
