"""Object ids across a video (stages.tracks, and `diod predict` using it): slots are linked
across clips on their shared frames, so an object keeps its id although every clip numbers
its slots anew."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_synth

from stages import inference, modelfile
from stages.artifacts import ArtifactStore
from stages.datasets import open_dataset
from stages.metrics import resize_nearest
from stages.model import DIOD, ModelConfig
from stages.predict import Predictor, clip_windows, frame_map_size
from stages.tracks import SlotTracks, TrackParams, slot_iou


def test_slot_iou_counts_shared_pixels():
    a = np.array([[0, 0, 1, 1]])
    b = np.array([[0, 1, 1, 1]])
    iou = slot_iou(a, b, 2)
    np.testing.assert_allclose(iou, [[0.5, 0.25], [0.0, 2 / 3]])


def test_link_keeps_ids_through_a_permutation_and_numbers_new_objects():
    tracks = SlotTracks(slots=4)
    first = np.array([[[0, 1, 3, 3]]])  # slots 0 and 1 seen; 3 is the background
    assert tracks.link(first, None, None).tolist() == [1, 2, 0, 0]
    # the next clip swaps slots 0 and 1 and shows a new object in slot 2
    new = np.array([[[1, 0, 3, 3]], [[1, 0, 2, 3]]])
    ids = tracks.link(new, first, new[:1])
    assert ids.tolist() == [2, 1, 3, 0]
    # an object that moved too far for the IoU bar is a new object
    strict = SlotTracks(slots=4, params=TrackParams(min_iou=0.9))
    strict.link(np.array([[[0, 0, 3, 3]]]), None, None)
    assert (
        strict.link(
            np.array([[[3, 0, 0, 3]]]), np.array([[[0, 0, 3, 3]]]), np.array([[[3, 0, 0, 3]]])
        )[0]
        == 2
    )


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A synth validation video (its frames folder) and its GT instance maps."""
    root = tiny_synth(tmp_path_factory.mktemp("tracks") / "synth", frames=10, seed=3)
    ds = open_dataset("synth", root)
    clip = ds.videos("val")[0]
    gt = np.stack([ds.instances(clip, i) for i in range(len(clip))])
    return clip.extra["dir"] / "rgb", gt


def test_predicted_ids_follow_gt_objects_across_clips(video, tmp_path, monkeypatch):
    """An oracle network segments the GT objects perfectly but numbers its slots in a new
    random order in every clip: `diod predict` must give each GT object one id."""
    frames_dir, gt = video
    slots, clip_length = 8, 3
    rng = np.random.default_rng(0)

    def oracle_clips(self, frames, n, overlap):
        list(frames)  # consume the input as the real network would
        t = self.clip_length
        h, w = frame_map_size(self.input_size, self.crop_top, 4)
        small = resize_nearest(gt, (h, w))
        objects = sorted(set(np.unique(gt)) - {0})
        for start, stop, first in clip_windows(n, t, overlap):
            order = rng.permutation(slots - 1)
            slot_of = np.full(int(gt.max()) + 1, slots - 1)
            slot_of[objects] = order[: len(objects)]
            one_hot = np.eye(slots, dtype=np.float32)[slot_of[small[start:stop]]]
            yield start, first, torch.from_numpy(one_hot).permute(0, 3, 1, 2)

    monkeypatch.setattr(Predictor, "clips", oracle_clips)
    model = DIOD(ModelConfig(num_slots=slots, encoder_width=0.125, decoder_channels=8))
    geometry = modelfile.InputGeometry(size=gt.shape[1:], crop_top=0.0, clip_length=clip_length)
    path = modelfile.save(modelfile.LoadedModel(model, geometry, "model", {}), tmp_path / "m.pt")
    config = inference.PredictConfig(
        inputs=(str(frames_dir),), model=str(path), out=tmp_path / "out", device="cpu",
        size=(gt.shape[1] * 4, gt.shape[2] * 4), overlay=False,  # maps at the frame's size
    )  # fmt: skip
    (folder,) = inference.predict(ArtifactStore(tmp_path / "ws"), config)
    ids = np.stack([np.asarray(p) for p in _pngs(folder)])
    assert ids.shape == gt.shape
    owner: dict[int, int] = {}
    for obj in sorted(set(np.unique(gt)) - {0}):
        got = {
            int(np.bincount(ids[i][gt[i] == obj]).argmax())
            for i in range(len(gt))
            if (gt[i] == obj).any()
        }
        assert len(got) == 1, f"GT object {obj} got ids {got}"
        owner[got.pop()] = obj
    assert 0 not in owner and len(owner) == len(set(np.unique(gt)) - {0})


def _pngs(folder):
    from stages.datasets.imageio import read_label_map

    return [read_label_map(p) for p in sorted((folder / "ids").glob("*.png"))]
