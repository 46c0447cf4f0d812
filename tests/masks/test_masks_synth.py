"""Mask quality on a fixed small synth val set (seed 2; the defaults were tuned on seed 1)
with the flow stage's own opencv-dis flow: the real use case. docs/masks.md explains the
figures."""

from __future__ import annotations

import pytest

from stages.artifacts import ArtifactStore
from stages.flow.stage import FlowConfig, compute_flow
from stages.masks.stage import MasksConfig, compute_masks
from stages.synthgen import SynthConfig, generate

FIXED_SET = SynthConfig(seed=2, train_videos=0, val_videos=6, frames=8)


@pytest.fixture(scope="module")
def dis_masks(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("masks_synth")
    root = generate(base / "synth", FIXED_SET, workers=1)
    store = ArtifactStore(base / "ws")
    flow = compute_flow(
        store, FlowConfig(dataset="synth", root=root, model="opencv-dis", ckpt=None, workers=0)
    )
    art = compute_masks(store, MasksConfig(dataset="synth", flow=flow.id))
    return art.manifest["summary"]["quality"]["val"]


def test_dis_masks_reach_the_acceptance_precision_and_recall(dis_masks):
    moving = dis_masks["moving"]
    assert moving["gt"] == 87  # the fixed set is what we think it is
    # measured P 0.70 / R 0.59 (docs/masks.md); the acceptance line
    assert moving["precision"] >= 0.6, moving
    assert moving["recall"] >= 0.5, moving


def test_static_objects_are_what_motion_masks_miss(dis_masks):
    moving, everything = dis_masks["moving"], dis_masks["all"]
    assert everything["gt"] > moving["gt"] and everything["tp"] >= moving["tp"]
    assert everything["recall"] < moving["recall"]
