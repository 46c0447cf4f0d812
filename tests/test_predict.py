"""Inference (stages.predict): clip windows, streaming prediction, scores, cropped tops."""

from __future__ import annotations

import numpy as np
import torch

from stages.evaluate import segment_mean
from stages.model import DIOD, ModelConfig
from stages.predict import Predictor, argmax_scores, clip_windows, frame_map_size


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
    predictor = Predictor(model, (16, 32), 0.0, 3, 2, torch.device("cpu"), "fp32")
    for first, maps in predictor(predictor.rgb_inputs(frames), 7):
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
    predictor = Predictor(model, (16, 32), 0.5, 2, 1, torch.device("cpu"), "fp32")
    ((first, maps),) = predictor(predictor.rgb_inputs(frames), 2)
    assert first == 0 and maps.shape == (2, 3, 8, 8)
    assert frame_map_size((16, 32), 0.5, 4) == (8, 8)
    assert torch.equal(
        maps[:, :, :4], torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(2, 3, 4, 8)
    )
    lower = torch.stack([torch.from_numpy(f[16:]).permute(2, 0, 1).float() / 255 for f in frames])
    with torch.no_grad():
        assert torch.allclose(maps[:, :, 4:], model(lower[None]).masks[0], atol=1e-5)


def test_overlapping_clips_share_one_frame_and_cover_the_video():
    """Clips for tracking (overlap 1): each new clip starts on its predecessor's last frame."""
    assert clip_windows(10, 4, 1) == [(0, 4, 0), (3, 7, 4), (6, 10, 7)]
    assert clip_windows(11, 4, 1) == [(0, 4, 0), (3, 7, 4), (6, 10, 7), (7, 11, 10)]
    torch.manual_seed(0)
    model = DIOD(ModelConfig(num_slots=3, encoder_width=0.125, decoder_channels=8)).eval()
    frames = [np.random.default_rng(i).integers(0, 256, (16, 32, 3), np.uint8) for i in range(7)]
    predictor = Predictor(model, (16, 32), 0.0, 3, 2, torch.device("cpu"), "fp32")
    clips = list(predictor.clips(predictor.rgb_inputs(frames), 7, overlap=1))
    assert [(s, f, len(m)) for s, f, m in clips] == [(0, 0, 3), (2, 3, 3), (4, 5, 3)]
