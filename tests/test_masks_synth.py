"""Mask quality on a fixed small synth val set (seed 2; the defaults were tuned on seed 1)
with the flow stage's own opencv-dis flow: the real use case. docs/masks.md explains the
figures and why recall stays under the issue's 0.5 on this data."""

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


def test_dis_masks_are_precise(dis_masks):
    moving = dis_masks["moving"]
    assert moving["gt"] == 120  # the fixed set is what we think it is
    assert moving["precision"] >= 0.6, moving
    # measured 0.22 (docs/masks.md); a floor that catches a broken stage, not a target
    assert moving["recall"] >= 0.15, moving
    everything = dis_masks["all"]
    assert everything["gt"] > moving["gt"] and everything["tp"] >= moving["tp"]
    assert everything["recall"] < moving["recall"]  # static objects are never found


@pytest.mark.xfail(
    strict=True,
    reason="acceptance recall 0.5 vs moving GT is out of reach on this synth data with "
    "opencv-dis (preset medium): half the movers move < 3 px/frame, objects crowd and "
    "overlap; see docs/masks.md 'Quality' for the measured causes and the data/flow changes "
    "that reach it",
)
def test_dis_masks_reach_the_acceptance_recall(dis_masks):
    assert dis_masks["moving"]["recall"] >= 0.5, dis_masks["moving"]
