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
from stages.tracks import ObjectTracks, TrackParams, overlaps


def test_overlaps_of_objects_and_slot_segments():
    ids, iou = overlaps(np.array([[0, 0, 5, 5]]), np.array([[0, 1, 1, 1]]), 2)
    assert ids.tolist() == [5]
    np.testing.assert_allclose(iou, [[0.0, 2 / 3]])


def test_ids_survive_renumbered_clips_slot_moves_and_fast_jumps():
    tracks = ObjectTracks(slots=5)  # slot 4 is the background
    tracks.start_clip(None)
    assert tracks.frame(np.array([[0, 1, 4, 4]])).tolist() == [1, 2, 0, 0, 0]
    # the next clip numbers the two objects the other way round (linked on the shared frame)
    # and shows a new object in slot 2
    tracks.start_clip(np.array([[1, 0, 4, 4]]))
    assert tracks.frame(np.array([[1, 0, 2, 4]])).tolist() == [2, 1, 3, 0, 0]
    # within the clip the model moves object 3 to the free slot 3: linked by overlap
    assert tracks.frame(np.array([[1, 0, 3, 4]])).tolist() == [2, 1, 0, 3, 0]
    # with no shared frame and no overlap, an object that jumped is new unless it stayed
    # within max_jump of the diagonal (here 0.1: no; 1.0: the nearest lost object)
    for max_jump, expected in ((0.1, 4), (1.0, 3)):
        jumpy = ObjectTracks(slots=5, params=TrackParams(max_jump=max_jump))
        jumpy.start_clip(None)
        jumpy.frame(np.array([[0, 1, 2, 4]]))
        jumpy.start_clip(None)
        assert jumpy.frame(np.array([[4, 4, 4, 2]]))[2] == expected


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
    random order in every clip and moves one object to a free slot after each clip's first
    frame (as a trained model was seen to): `diod predict` must give each GT object one id,
    two small objects crossing each other included."""
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
            labels = slot_of[small[start:stop]]
            moved, spare = order[0], order[len(objects)]  # spare: a slot no object uses
            labels[1:][labels[1:] == moved] = spare  # an object changes slot within the clip
            one_hot = np.eye(slots, dtype=np.float32)[labels]
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
