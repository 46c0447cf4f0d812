"""Mask quality: P/R/F1 at IoU > 0.5 against moving and against all GT instances."""

from __future__ import annotations

import numpy as np

from stages.masks.quality import MaskCounts, format_scores, frame_counts, prf, resize_labels


def _frame() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((20, 40), np.int64)
    gt[0:10, 0:10] = 5  # moving, found (IoU 0.8)
    gt[0:10, 20:30] = 900_000_000  # static, found (colour-coded-size id)
    gt[12:20, 0:10] = 7  # moving, missed: mask covers 3/8 of it
    gt[12:20, 30:40] = 8  # static, no mask
    masks = np.zeros((20, 40), np.uint8)
    masks[0:8, 0:10] = 1
    masks[0:10, 20:30] = 2
    masks[17:20, 0:10] = 3
    masks[12:20, 15:25] = 4  # background only
    return masks, gt


def test_frame_counts_against_moving_and_all_instances():
    masks, gt = _frame()
    c = frame_counts(masks, gt, {5, 7})
    assert c == MaskCounts(frames=1, masks=4, gt_all=4, tp_all=2, gt_moving=2, tp_moving=1)
    scores = c.scores()
    assert scores["moving"] == {
        "precision": 0.25,
        "recall": 0.5,
        "f1": 0.3333,
        "tp": 1,
        "masks": 4,
        "gt": 2,
    }
    assert scores["all"]["precision"] == 0.5 and scores["all"]["recall"] == 0.5
    unknown = frame_counts(masks, gt, None)
    assert unknown.gt_moving is None and unknown.scores()["moving"] is None
    assert "unknown" in format_scores(unknown.scores())[0]


def test_iou_must_exceed_one_half():
    gt = np.zeros((10, 10), np.int64)
    gt[:, :4] = 1
    masks = np.zeros((10, 10), np.uint8)
    masks[:, :8] = 1  # IoU exactly 0.5: not a match
    assert frame_counts(masks, gt, {1}).tp_all == 0
    masks[:, 7] = 0  # IoU 40/70 > 0.5
    assert frame_counts(masks, gt, {1}).tp_all == 1


def test_counts_add_up_and_gt_is_resized_to_the_masks():
    masks, gt = _frame()
    big_gt = np.repeat(np.repeat(gt, 3, axis=0), 3, axis=1)  # GT at 3x the masks' size
    np.testing.assert_array_equal(resize_labels(big_gt, 20, 40), gt)
    total = frame_counts(masks, big_gt, {5, 7}) + frame_counts(masks, gt, {5, 7})
    assert total.frames == 2 and total.tp_moving == 2 and total.masks == 8
    assert (total + frame_counts(masks, gt, None)).tp_moving is None
    assert MaskCounts.from_dict(total.to_dict()) == total


def test_prf_edge_cases():
    assert prf(0, 0, 0) == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "tp": 0,
        "masks": 0,
        "gt": 0,
    }
    assert prf(3, 3, 6)["f1"] == round(2 * 1 * 0.5 / 1.5, 4)
    assert frame_counts(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.int64), set()).masks == 0
