"""`diod export`: the predictions artifact and its overlays, resume, and the eval stage
reading it."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from helpers import gt_masks_artifact, tiny_request, tiny_synth

from stages import export as export_mod
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
    with pytest.raises(UserError, match="no complete burnin or distill"):
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
