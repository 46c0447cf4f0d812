"""Mask quality on a fixed small synth val set (seed 2; the geometric defaults were tuned on
seed 1, the built-in segmenter trained on other seeds) with the flow stage's own opencv-dis
flow: the real use case. docs/masks.md explains the figures."""

from __future__ import annotations

import pytest

from stages.artifacts import ArtifactStore
from stages.flow.stage import FlowConfig, compute_flow
from stages.masks.params import NO_SEGMENTER
from stages.masks.stage import MasksConfig, compute_masks
from stages.synthgen import SynthConfig, generate

FIXED_SET = SynthConfig(seed=2, train_videos=0, val_videos=6, frames=8)


@pytest.fixture(scope="module")
def dis_flow(tmp_path_factory) -> tuple[ArtifactStore, str]:
    base = tmp_path_factory.mktemp("masks_synth")
    root = generate(base / "synth", FIXED_SET, workers=1)
    store = ArtifactStore(base / "ws")
    flow = compute_flow(
        store, FlowConfig(dataset="synth", root=root, model="opencv-dis", ckpt=None, workers=0)
    )
    return store, flow.id


def _val_quality(dis_flow: tuple[ArtifactStore, str], **config) -> dict:
    store, flow = dis_flow
    art = compute_masks(store, MasksConfig(dataset="synth", flow=flow, **config))
    return art.manifest["summary"]["quality"]["val"]


@pytest.fixture(scope="module")
def default_masks(dis_flow) -> dict:
    return _val_quality(dis_flow)


@pytest.mark.parametrize(
    "segmenter, precision, recall",
    [
        # the builtin (the default, 10000 steps fine-tuned 5000 on DIS + exact flow): measured
        # P 0.96 / R 0.89 (with the geometric rule's split and persistence 0.93 / 0.87; before
        # the fine-tuning 0.88 / 0.84; the 5000-step model 0.84 / 0.84; with the ground-contact
        # test, which a segmenter no longer gets, 0.91 / 0.84)
        (None, 0.8, 0.75),
        # the geometric rule: measured P 0.62 / R 0.56
        (NO_SEGMENTER, 0.6, 0.5),
    ],
)
def test_dis_masks_reach_the_acceptance_precision_and_recall(
    dis_flow, default_masks, segmenter, precision, recall
):
    quality = default_masks if segmenter is None else _val_quality(dis_flow, segmenter=segmenter)
    moving = quality["moving"]
    assert moving["gt"] == 87  # the fixed set is what we think it is
    assert moving["precision"] >= precision, moving
    assert moving["recall"] >= recall, moving


def test_static_objects_are_what_motion_masks_miss(default_masks):
    moving, everything = default_masks["moving"], default_masks["all"]
    assert everything["gt"] > moving["gt"] and everything["tp"] >= moving["tp"]
    assert everything["recall"] < moving["recall"]
