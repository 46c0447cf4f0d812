"""The authors' training step (CEA-LIST/DIOD ``trainPD_ts.py``), timed as they released it,
so that bench/train.py (``--reference PATH``) can set it beside ours in one run.

Nothing of theirs ships with diod: point ``--reference`` at your own checkout of their
repository. Their script runs unchanged but for four things, all done from outside:

- its input-size literals (the model's resolution (480, 968) and the motion-mask size
  (120, 242), a quarter of it) are rewritten in a temporary copy to the case's size, and on
  a machine without CUDA the ConvGRU's hard-coded ``torch.cuda.FloatTensor`` too; the copy
  fails loudly if a literal is missing, so a changed upstream is never timed blindly;
- its PD data sets are replaced (their modules are not even imported) by our clips (the same synth clips, crops and flips our step
  gets) in the layout their loader returns: frames in [0, 1], (T, 3, H, W), and full-size
  motion-mask ids, (T, H, W);
- its progress bar (``tqdm`` over the loader) is replaced by a timer that records the time
  between consecutive batches, one full training step each, and stops after the last one;
- the burn-in checkpoint their distillation loads is a freshly initialised model of theirs,
  as our distillation bench starts from a fresh model too.

Their module-level ``torch.autograd.set_detect_anomaly(True)`` is kept by default, as
released; ``anomaly=False`` times their step without it. Their environment pins
torchaug==0.3.2 (installed e.g. ``pip install --target DIR torchaug==0.3.2 --no-deps``,
then ``PYTHONPATH=DIR``), and imports tqdm, matplotlib, scipy and tkinter.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

SCRIPT = "trainPD_ts.py"
SUPPORT = ("models", "transforms.py", "utils.py")
# their data modules are not copied (the eval one imports torchvision.io.read_video, gone
# from torchvision 0.29): the harness replaces both data sets anyway
DATA_MODULES = ("datasetPD.py", "datasetPDEval.py")
NUM_SLOTS, HID_DIM = 45, 64  # their script's defaults, which our ref-* cases match


class StopTiming(Exception):
    """Raised by the timer after the last timed step, to leave their epoch loop."""


class StepTimer:
    """Stands in for ``tqdm(loader)``: yields the batches, records when each was asked for."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.stamps: list[float] = []

    def __call__(self, loader):
        for batch in loader:
            self.stamps.append(time.perf_counter())
            if len(self.stamps) > self.steps:
                raise StopTiming
            yield batch
        raise RuntimeError(f"the loader ran out after {len(self.stamps)} of {self.steps} steps")

    def step_times(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]


class TheirClips(torch.utils.data.Dataset):
    """Our clips in the layout of their PD loader's output (``datasetPD.PDDataset``)."""

    def __init__(self, clips, count: int) -> None:
        # loaded up front: their loader then costs a step nothing, as our bench's loader
        # (a worker process) costs ours nothing
        self.items = [self._theirs(clips[i % len(clips), i // len(clips)]) for i in range(count)]

    @staticmethod
    def _theirs(item: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        masks = item["masks"]  # (T, M, H, W) bool at full size
        ids = torch.arange(1, masks.shape[1] + 1).view(1, -1, 1, 1)
        return {
            "image": item["frames"].float() / 255.0,
            "mask": (masks.long() * ids).amax(dim=1) if masks.shape[1] else masks[:, 0].long(),
        }

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


def _rewrites(size: tuple[int, int]) -> dict[str, list[tuple[str, str]]]:
    """Per file, the literals rewritten in the temporary copy: the input size, and on a
    machine without CUDA, the ConvGRU's hidden-state type (hard-coded to CUDA)."""
    h, w = size
    rewrites = {
        SCRIPT: [
            ("(480, 968)", f"({h}, {w})"),
            ("(120, 242)", f"({h // 4}, {w // 4})"),
            ("(120*242)", f"({h // 4}*{w // 4})"),
        ]
    }
    if not torch.cuda.is_available():
        rewrites["models/model_bg.py"] = [("torch.cuda.FloatTensor", "torch.FloatTensor")]
    return rewrites


def _patched_copy(code: Path, work: Path, size: tuple[int, int]) -> None:
    if not (code / SCRIPT).is_file():
        raise SystemExit(f"--reference: {code} has no {SCRIPT} (expected a CEA-LIST/DIOD checkout)")
    for name in SUPPORT:
        source = code / name
        if source.is_dir():
            shutil.copytree(source, work / name)
        else:
            shutil.copy(source, work / name)
    shutil.copy(code / SCRIPT, work / SCRIPT)
    for name in DATA_MODULES:
        (work / name).write_text("PDDataset = None  # replaced by bench/reference.py\n")
    for name, pairs in _rewrites(size).items():
        text = (work / name).read_text()
        for old, new in pairs:
            if old not in text:
                raise SystemExit(
                    f"--reference: {name} no longer contains {old}; update bench/reference.py"
                )
            text = text.replace(old, new)
        (work / name).write_text(text)


def time_step(
    code: Path,
    stage: str,
    clips,
    size: tuple[int, int],
    batch: int,
    steps: int,
    anomaly: bool = True,
) -> list[float]:
    """Seconds per step of their ``stage`` ("burnin" or "distill") step; ``clips`` is a
    ``ClipDataset`` at ``size`` with full-size masks."""
    work = Path(tempfile.mkdtemp(prefix="diod-ref-"))
    try:
        _patched_copy(code, work, size)
        sys.path.insert(0, str(work))
        import trainPD_ts as theirs  # noqa: PLC0415 - the patched copy, importable only now

        torch.autograd.set_detect_anomaly(anomaly)
        timer = StepTimer(steps)
        theirs.tqdm = timer
        theirs.PDDataset = lambda **_: TheirClips(clips, batch * (steps + 2))
        theirs.PDDatasetEval = lambda **_: None

        init = work / "runs" / "init"
        init.mkdir(parents=True)
        fresh = torch.nn.DataParallel(
            theirs.SlotAttentionAutoEncoder(size, NUM_SLOTS, HID_DIM, output_channel=3)
        )
        torch.save({"model_state_dict": fresh.state_dict()}, init / "fresh.ckpt")
        del fresh
        sys.argv = [
            SCRIPT,
            f"--batch_size={batch}",
            "--num_workers=0",
            f"--num_slots={NUM_SLOTS}",
            f"--hid_dim={HID_DIM}",
            f"--model_dir={work / 'runs'}",
            f"--sample_dir={work / 'samples'}",
            "--burn_in_exp=init",
            "--burn_in_ckpt=fresh.ckpt",
            # their distillation starts at epoch start_teacher; before it, burn-in
            f"--start_teacher={0 if stage == 'distill' else 10**9}",
        ]
        with contextlib.suppress(StopTiming):
            theirs.main()
        return timer.step_times()
    finally:
        if str(work) in sys.path:
            sys.path.remove(str(work))
        shutil.rmtree(work, ignore_errors=True)
