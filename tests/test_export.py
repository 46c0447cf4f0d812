"""`diod export`: the predictions artifact and its overlays, resume, and the eval stage
reading it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr
from helpers import gt_masks_artifact, tiny_request, tiny_synth

from diodcli.main import main
from stages import export as export_mod
from stages import modelfile
from stages.artifacts import ArtifactStore
from stages.errors import UserError
from stages.evaluate import EvalConfig, evaluate
from stages.export import ExportConfig, export


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from stages.train import train

    base = tmp_path_factory.mktemp("export")
    root = tiny_synth(base / "synth", val_videos=2, frames=7)
    store = ArtifactStore(base / "runs")
    gt_masks_artifact(store, root)
    return store, train(store, tiny_request(steps=2, val_split=""))


def test_predictions_artifact_format_and_overlays(trained):
    store, model_art = trained
    art = export(
        store,
        ExportConfig(dataset="synth", split="val", soft=True, png=True, mp4=True, device="cpu"),
    )
    assert art.is_complete and art.stage == "export" and art.upstream == {"burnin": model_art.id}
    assert art.params["which"] == "model" and art.params["clip_length"] == 3
    group = zarr.open_group(str(art.path / "predictions.zarr/val/val-0000"), mode="r")
    slots, scores, soft = group["slots"], group["scores"], group["soft"]
    assert slots.shape == (7, 8, 16) and slots.dtype == np.uint8 and slots.chunks == (1, 8, 16)
    assert scores.shape == (7, 4) and scores.dtype == np.float32
    assert soft.shape == (7, 4, 8, 16) and soft.dtype == np.float16
    attrs = dict(group.attrs)
    assert attrs["num_slots"] == 4 and attrs["background_slot"] == 3
    assert (attrs["height"], attrs["width"], attrs["source_height"], attrs["source_width"]) == (
        8,
        16,
        32,
        64,
    )
    assert attrs["split"] == "val" and len(attrs["frame_names"]) == 7
    s = np.asarray(slots[:])
    assert np.mean(s == np.asarray(soft[:]).argmax(1)) > 0.99  # float16 may flip near-ties
    pngs = sorted((art.path / "overlays/val/val-0000").glob("*.png"))
    assert len(pngs) == 7
    assert (art.path / "overlays/val/val-0000.mp4").stat().st_size > 0
    # the eval stage scores it
    scored = evaluate(store, EvalConfig(dataset="synth", split="val"))
    assert scored.upstream == {"export": art.id}
    # a second run is a no-op
    again = export(
        store,
        ExportConfig(dataset="synth", split="val", soft=True, png=True, mp4=True, device="cpu"),
    )
    assert again.manifest["finished"] == art.manifest["finished"]


def test_per_frame_protocol_and_model_selection(trained):
    store, model_art = trained
    art = export(
        store,
        ExportConfig(
            dataset="synth", split="val", clip_length=1, model=model_art.id[:6], device="cpu"
        ),
    )
    assert art.params["clip_length"] == 1
    by_stage = export(
        store, ExportConfig(dataset="synth", split="val", model="burnin", device="cpu")
    )
    assert by_stage.upstream == {"burnin": model_art.id}
    with pytest.raises(UserError, match="no complete distill artifact"):
        export(store, ExportConfig(dataset="synth", model="distill"))
    with pytest.raises(UserError, match="--model zzz"):
        export(store, ExportConfig(dataset="synth", model="zzz"))
    with pytest.raises(UserError, match="--which"):
        export(store, ExportConfig(dataset="synth", which="both"))
    with pytest.raises(UserError, match="no complete trained model"):
        export(ArtifactStore(store.workspace / "nothing"), ExportConfig(dataset="synth"))


def test_interrupted_export_resumes_without_redoing_videos(trained, monkeypatch):
    store, _model_art = trained
    real = export_mod._export_video
    calls = []

    def flaky(writer, ds, video, *args):
        calls.append(video.name)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(writer, ds, video, *args)

    monkeypatch.setattr(export_mod, "_export_video", flaky)
    config = ExportConfig(dataset="synth", split="val", clip_length=2, batch_size=1, device="cpu")
    with pytest.raises(RuntimeError):
        export(store, config)
    calls.clear()
    art = export(store, config)
    assert art.is_complete and calls == ["val-0001"]


def _spy_model(monkeypatch) -> list:
    """Collect the networks export loads (to inspect their state after the export) and the
    batch size of every forward pass they make."""
    loaded, batches = [], []
    real = modelfile.from_artifact

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        forward = result.model.forward

        def counted(frames, *a, **k):
            batches.append(len(frames))
            return forward(frames, *a, **k)

        result.model.forward = counted
        loaded.append(result)
        return result

    monkeypatch.setattr(modelfile, "from_artifact", spy)
    return loaded, batches


def test_batchnorm_train_uses_each_batch_and_leaves_running_stats(trained, monkeypatch):
    store, model_art = trained
    loaded, batches = _spy_model(monkeypatch)
    base = dict(dataset="synth", split="val", clip_length=3, batch_size=2, device="cpu")
    eval_mode = export(store, ExportConfig(**base, precision="fp32"))
    train_mode = export(store, ExportConfig(**base, batchnorm="train", precision="fp32"))
    assert eval_mode.params["batchnorm"] == "eval" and eval_mode.params["batch_size"] is None
    assert train_mode.params["batchnorm"] == "train" and train_mode.params["batch_size"] == 2
    assert train_mode.manifest["summary"]["batchnorm"] == "train"
    fresh = modelfile.checkpoint.final(model_art)["model"]
    used = loaded[-1].model
    norms = [m for m in used.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.training for m in norms) and not used.training
    state = used.state_dict()
    for key in fresh:
        if "running_" in key or "num_batches_tracked" in key:
            assert torch.equal(state[key], fresh[key]), key
    scores = [
        np.asarray(zarr.open_group(str(a.path / "predictions.zarr/val/val-0000"))["scores"])
        for a in (eval_mode, train_mode)
    ]
    assert not np.allclose(*scores)  # the batch statistics are not the running ones
    assert batches[-4:] == [2, 1, 2, 1]  # per video of 7 frames: clips 0-2 and 3-5, then 4-6


def test_one_frame_clips_fill_batches_across_videos(trained, monkeypatch):
    store, _ = trained
    _loaded, batches = _spy_model(monkeypatch)
    base = dict(dataset="synth", split="val", clip_length=1, device="cpu", precision="fp32")
    shared = export(store, ExportConfig(**base, batch_size=4))
    assert batches == [4, 4, 4, 2]  # 2 videos x 7 frames: batches cross the video boundary
    alone = export(store, ExportConfig(**base, batch_size=1, force=True, soft=True))
    for name in ("val-0000", "val-0001"):
        a, b = (
            zarr.open_group(str(art.path / "predictions.zarr/val" / name), mode="r")
            for art in (shared, alone)
        )
        assert np.array_equal(a["slots"][:], b["slots"][:])
        assert np.allclose(a["scores"][:], b["scores"][:], atol=1e-5)


def test_paper_protocol_export_and_its_eval(trained, capsys):
    store, _ = trained
    art = export(store, ExportConfig(dataset="synth", protocol="paper", device="cpu"))
    assert {k: art.params[k] for k in ("which", "batchnorm", "batch_size", "precision")} == {
        "which": "model",  # a burn-in: its one network
        "batchnorm": "train",
        "batch_size": 1,
        "precision": "fp32",
    }
    assert art.params["clip_length"] == 3  # not fixed on synth: the training T
    scored = evaluate(store, EvalConfig(dataset="synth", protocol="paper", predictions=art.id))
    assert json.loads((scored.path / "scores.json").read_text())["export_deviations"] == []
    with pytest.raises(UserError, match="--batchnorm eval: the paper protocol runs the model"):
        export(store, ExportConfig(dataset="synth", protocol="paper", batchnorm="eval"))
    with pytest.raises(UserError, match="--which teacher"):
        export(store, ExportConfig(dataset="synth", protocol="paper", which="teacher"))
    with pytest.raises(UserError, match="--batchnorm both: expected one of eval, train"):
        export(store, ExportConfig(dataset="synth", batchnorm="both"))
    ws = ["--workspace", str(store.workspace)]
    with pytest.raises(SystemExit) as exc:
        main([*ws, "export", "--dataset", "synth", "--protocol", "paper", "--precision", "bf16"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--precision bf16" in err and len(err.strip().splitlines()) == 1
    main([*ws, "export", "--help"])
    out = capsys.readouterr().out
    assert "--protocol [diod|paper]" in out and "--batchnorm [eval|train]" in out
