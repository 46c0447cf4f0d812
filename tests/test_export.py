"""`diod export`: clip windows, streaming inference, scores, the predictions artifact and
its overlays, resume, and the eval stage reading it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr
from train_helpers import gt_masks_artifact, tiny_synth, tiny_train_config

from stages import export as export_mod
from stages.artifacts import ArtifactStore
from stages.errors import UserError
from stages.evaluate import EvalConfig, evaluate, segment_mean
from stages.export import (
    ExportConfig,
    argmax_scores,
    clip_windows,
    export,
    frame_map_size,
    predict_video,
)
from stages.model import DIOD, ModelConfig


def test_clip_windows_cover_every_frame_once():
    assert clip_windows(6, 3) == [(0, 3, 0), (3, 6, 3)]
    assert clip_windows(7, 3) == [(0, 3, 0), (3, 6, 3), (4, 7, 6)]
    assert clip_windows(2, 5) == [(0, 2, 0)]
    assert clip_windows(4, 1) == [(i, i + 1, i) for i in range(4)]


def test_argmax_scores_match_the_eval_stage_definition():
    torch.manual_seed(0)
    maps = torch.rand(3, 5, 6, 7).softmax(1)
    maps[1, 2] = 0  # slot 2 of frame 1 owns no pixel: score 0
    ids, scores = argmax_scores(maps)
    assert torch.equal(ids, maps.argmax(1))
    expected = segment_mean(maps.numpy(), ids.numpy())
    assert np.allclose(scores.numpy(), expected, atol=1e-6)
    assert scores[1, 2] == 0


def test_streamed_prediction_equals_the_model_on_each_clip():
    torch.manual_seed(0)
    model = DIOD(ModelConfig(num_slots=4, encoder_width=0.125, decoder_channels=8)).eval()
    frames = [
        np.random.default_rng(i).integers(0, 256, (16, 32, 3), dtype=np.uint8) for i in range(7)
    ]
    got = torch.zeros(7, 4, 4, 8)
    seen = []
    for first, maps in predict_video(
        model, iter(frames), 7, (16, 32), 3, 2, torch.device("cpu"), "fp32"
    ):
        got[first : first + len(maps)] = maps
        seen.extend(range(first, first + len(maps)))
    assert seen == list(range(7))
    x = torch.stack([torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in frames])
    with torch.no_grad():
        expected = torch.cat(
            [
                model(x[0:3][None]).masks[0],
                model(x[3:6][None]).masks[0],
                model(x[4:7][None]).masks[0, 2:],
            ]
        )
    assert torch.allclose(got, expected, atol=1e-5)


def test_cropped_top_rows_are_background_in_full_frame_maps():
    """A model trained on the frame without its top (TRI-PD) predicts maps of the whole
    frame: the cropped rows belong to the background slot, the rest is the model's."""
    torch.manual_seed(0)
    model = DIOD(ModelConfig(num_slots=3, encoder_width=0.125, decoder_channels=8)).eval()
    frames = [
        np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(2)
    ]
    ((first, maps),) = predict_video(
        model, iter(frames), 2, (16, 32), 2, 1, torch.device("cpu"), "fp32", 0.5
    )
    assert first == 0 and maps.shape == (2, 3, 8, 8)
    assert frame_map_size((16, 32), 0.5, 4) == (8, 8)
    assert torch.equal(
        maps[:, :, :4], torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(2, 3, 4, 8)
    )
    lower = torch.stack([torch.from_numpy(f[16:]).permute(2, 0, 1).float() / 255 for f in frames])
    with torch.no_grad():
        assert torch.allclose(maps[:, :, 4:], model(lower[None]).masks[0], atol=1e-5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from stages.train.stage import train

    base = tmp_path_factory.mktemp("export")
    root = tiny_synth(base / "synth", val_videos=2, frames=7)
    store = ArtifactStore(base / "runs")
    gt_masks_artifact(store, root)
    return store, train(store, tiny_train_config(steps=2, val_split=""))


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
