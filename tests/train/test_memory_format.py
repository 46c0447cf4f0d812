"""The memory format of a run: timed once per machine and situation, without touching the
model, applied to every module, recorded in checkpoints and kept on resume."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY_MODEL, gt_masks_artifact, tiny_request

from stages.artifacts import ArtifactStore
from stages.hardware import Distributed
from stages.model import DIOD, ModelConfig
from stages.train import checkpoint, memory_format
from stages.train.memory_format import CHANNELS_LAST, CONTIGUOUS

SHAPE = (1, 2, 3, 32, 64)
CPU = torch.device("cpu")


def _never_timed(*_args, **_kwargs):
    raise AssertionError("timed although the format was known")


def test_a_given_format_is_not_timed(monkeypatch):
    monkeypatch.setattr(memory_format, "_timed_choice", _never_timed)
    model = DIOD(ModelConfig(**TINY_MODEL))
    for fmt in (CHANNELS_LAST, CONTIGUOUS):
        assert memory_format.choose(fmt, model, SHAPE, CPU, "fp32", Distributed()) == fmt


def test_auto_times_a_copy_once_and_then_keeps_the_recorded_choice(monkeypatch):
    torch.manual_seed(0)
    model = DIOD(ModelConfig(**TINY_MODEL)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()

    chosen = memory_format.choose("auto", model, SHAPE, CPU, "fp32", Distributed())

    assert chosen in (CHANNELS_LAST, CONTIGUOUS)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics too
    assert all(p.grad is None for p in model.parameters())
    assert not model.channels_last
    assert torch.equal(torch.get_rng_state(), rng)  # the run's random stream is untouched
    assert chosen in json.loads(memory_format.cache_path().read_text()).values()

    monkeypatch.setattr(memory_format, "_timed_choice", _never_timed)
    assert memory_format.choose("auto", model, SHAPE, CPU, "fp32", Distributed()) == chosen
    other_shape = (2, *SHAPE[1:])  # another situation is timed afresh
    with pytest.raises(AssertionError, match="timed although"):
        memory_format.choose("auto", model, other_shape, CPU, "fp32", Distributed())


def test_an_unreadable_record_is_timed_again(monkeypatch):
    memory_format.cache_path().parent.mkdir(parents=True, exist_ok=True)
    memory_format.cache_path().write_text("{not json")
    monkeypatch.setattr(memory_format, "_timed_choice", lambda *_: CHANNELS_LAST)
    model = DIOD(ModelConfig(**TINY_MODEL, slot_seed=7))  # a situation of its own
    assert memory_format.choose("auto", model, SHAPE, CPU, "fp32", Distributed()) == CHANNELS_LAST


def test_a_run_applies_records_and_resumes_with_its_format(tiny_masks, tmp_path, monkeypatch):
    from stages.train import burnin, train

    root, _, _ = tiny_masks
    store = ArtifactStore(tmp_path / "runs")
    gt_masks_artifact(store, root)
    monkeypatch.setattr(memory_format, "_timed_choice", lambda *_: CHANNELS_LAST)

    def stop(self, model, step):
        assert model.channels_last
        assert model.encoder.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
        if step == 3:  # after the step-2 checkpoint
            raise KeyboardInterrupt

    monkeypatch.setattr(burnin.BurninObjective, "after_step", stop)
    with pytest.raises(KeyboardInterrupt):
        train(store, tiny_request(steps=4, checkpoint_every=2, seed=5))
    monkeypatch.undo()
    # the recorded choice would now say otherwise: the resumed run keeps its own
    monkeypatch.setattr(memory_format, "_timed_choice", _never_timed)
    monkeypatch.setenv("DIOD_CACHE", str(tmp_path / "empty-cache"))
    done = train(store, tiny_request(steps=4, checkpoint_every=2, seed=5, resume=True))
    assert done.manifest["resumed"]
    assert done.manifest["summary"]["memory_format"] == CHANNELS_LAST
    assert checkpoint.final(done)["memory_format"] == CHANNELS_LAST
