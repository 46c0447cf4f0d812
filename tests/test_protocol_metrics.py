"""The authors' ARI and skip rule (stages.protocol_metrics), the MOVi video-level scores and
the dataset-level F1 matching, each against a value computed here from its definition."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from stages.metrics import (
    Evaluation,
    best_overlaps,
    compact_labels,
    contingency_tables,
    sample_ari,
    video_fg_ari,
)
from stages.protocol_metrics import paper_ari


def _tables(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, ...) GT and predicted ids -> (S, G, P) tables and the GT id of each row."""
    gt_c, ids = compact_labels(gt)
    return contingency_tables(gt_c, pred, len(ids), int(pred.max()) + 1), ids


def _pair_ari(gt: np.ndarray, pred: np.ndarray) -> float:
    """The adjusted Rand index from its definition, by visiting every pair of pixels:
    (index - expected) / (mean of the two pair counts - expected)."""
    g, p = gt.ravel().tolist(), pred.ravel().tolist()
    both = same_gt = same_pred = pairs = 0
    for i, j in itertools.combinations(range(len(g)), 2):
        pairs += 1
        same_gt += g[i] == g[j]
        same_pred += p[i] == p[j]
        both += g[i] == g[j] and p[i] == p[j]
    expected = same_gt * same_pred / pairs
    return (both - expected) / ((same_gt + same_pred) / 2 - expected)


def test_paper_ari_is_the_pair_counting_ari_of_the_argmax():
    rng = np.random.default_rng(3)
    for _ in range(5):
        gt = rng.integers(0, 4, (1, 5, 6))
        gt[0, 0, :3] = 2  # at least one id >= 2: the sample is kept
        pred = rng.integers(0, 3, (1, 5, 6))
        tables, ids = _tables(gt, pred)
        fg, full, kept = paper_ari(tables, ids)
        fgmask = gt[0] > 0
        assert kept[0]
        assert full[0] == pytest.approx(_pair_ari(gt[0], pred[0]), abs=1e-9)
        assert fg[0] == pytest.approx(_pair_ari(gt[0][fgmask], pred[0][fgmask]), abs=1e-9)


def test_one_object_with_id_2_counts_with_fg_ari_0_where_ours_skips_it():
    """Their skip rule reads the largest id (one_hot columns), not the number of objects."""
    gt = np.zeros((3, 4, 4), np.int64)
    gt[0, :2] = 2  # frame 0: one object, id 2
    gt[1, :2], gt[1, 2:, :2] = 1, 2  # frame 1: objects 1 and 2
    gt[2, :2] = 1  # frame 2: one object, id 1
    pred = np.where(gt > 0, gt - 1, 3)  # exact, background slot 3
    tables, ids = _tables(gt, pred)
    fg, full, kept = paper_ari(tables, ids)
    assert kept.tolist() == [True, True, False]
    # frame 0: one GT category, one predicted cluster on it: their formula gives 0/eps = 0
    assert fg[0] == pytest.approx(0.0, abs=1e-12) and fg[1] == pytest.approx(1.0)
    assert full[0] == pytest.approx(1.0) and full[1] == pytest.approx(1.0)
    # a split object is 0 too: the numerator vanishes whenever there is one GT category
    split = pred.copy()
    split[0, 0] = 2
    assert paper_ari(*_tables(gt, split))[0][0] == pytest.approx(0.0, abs=1e-12)
    assert sample_ari(tables, ids)[2].tolist() == [False, True, False]  # ours skips 0 and 2


def test_conventions_one_cluster_each_and_unstable_samples():
    # the whole sample is object 2 and one slot: 1 (both one cluster), kept
    gt, pred = np.full((1, 2, 3), 2), np.zeros((1, 2, 3), np.int64)
    fg, full, kept = paper_ari(*_tables(gt, pred))
    assert fg[0] == full[0] == 1.0 and kept[0]
    # one foreground pixel: the expected index divides by n (n - 1) = 0, NaN, discarded
    gt = np.zeros((1, 2, 3), np.int64)
    gt[0, 0, 0] = 5
    pred = np.array([[[0, 1, 1], [1, 1, 2]]])
    fg, full, kept = paper_ari(*_tables(gt, pred))
    assert math.isnan(fg[0]) and not kept[0] and not math.isnan(full[0])


def test_video_fg_ari_and_mbo_of_video_level_masks():
    # two frames of 1 x 4 pixels; object 1 drifts from slot 0 to slot 1 between frames
    gt = np.array([[[0, 1, 1, 2]], [[0, 1, 2, 2]]])
    pred = np.array([[[3, 0, 0, 1]], [[3, 1, 2, 2]]])
    table = _tables(gt, pred)[0].sum(0)
    g, p = gt.ravel(), pred.ravel()
    assert video_fg_ari(table) == pytest.approx(adjusted_rand_score(g[g > 0], p[g > 0]))
    # object 1 (3 px): slot 0 covers 2 of them, alone: IoU 2/3; slot 1: 1 / (3 + 2 - 1)
    # object 2 (3 px): slot 2 covers 2 of them, alone: IoU 2/3; slot 1: 1 / (3 + 2 - 1)
    assert best_overlaps(table) == pytest.approx([2 / 3, 2 / 3])
    # the background slot is a candidate too (a slot is a slot to the MOVi literature)
    assert best_overlaps(_tables(gt, np.full_like(gt, 3))[0].sum(0)) == pytest.approx(
        [3 / 8, 3 / 8]
    )
    assert math.isnan(video_fg_ari(_tables(np.zeros_like(gt), pred)[0].sum(0)))

    evaluation = Evaluation(video_scores=True)
    evaluation.add_video("v", gt, pred, background=3)
    evaluation.add_video("w", np.zeros_like(gt), pred, background=3)  # no object: not averaged
    summary = evaluation.summary()
    assert summary["mbo"] == pytest.approx(2 / 3)
    assert summary["video_fg_ari"] == pytest.approx(video_fg_ari(table))
    assert "mbo" not in Evaluation().summary()


def test_f1_is_voc_greedy_over_the_whole_set():
    """Three frames: an object split in two halves (IoU exactly 0.5 each: no match at 0.5,
    strict; at 0.25 the more confident half matches and the other is a duplicate), a frame
    with two matches and a segment on the background, a frame without GT."""
    bg = 5
    gt = np.zeros((3, 2, 8), np.int64)
    pred = np.full((3, 2, 8), bg)
    scores = np.zeros((3, 6))
    gt[0, :, :4] = 1  # 8 px
    pred[0, :, :2], pred[0, :, 2:4] = 0, 1  # 4 px each: IoU 4 / 8 = 0.5
    scores[0, :2] = [0.4, 0.8]
    gt[1, :, :4], gt[1, :, 6:8] = 1, 2  # 8 px, 4 px
    pred[1, :, :3] = 0  # 6 px inside object 1: IoU 0.75
    pred[1, :, 6:8] = 1  # object 2 exactly
    pred[1, :, 4:6] = 2  # background only: IoU 0
    scores[1, :3] = [0.6, 0.3, 0.7]
    pred[2, :, :2] = 0  # no GT in frame 2: a false positive
    scores[2, 0] = 0.99
    evaluation = Evaluation(ari=paper_ari)
    evaluation.add_video("v", gt, pred, background=bg, scores=scores)
    s = evaluation.summary()
    n_pred, n_gt = 6, 3
    assert (s["n_pred"], s["n_gt"]) == (n_pred, n_gt)
    # TP at 0.5: frame 1's slots 0 (0.75 > 0.5) and 1 (1.0); the halves (0.5) are not > 0.5
    # TP at 0.25: one half of frame 0 (the other is a duplicate) and frame 1's two
    # TP at 0.75: frame 1's slot 1 only (0.75 is not > 0.75)
    for pct, tp in ((50, 2), (25, 3), (75, 1)):
        precision, recall = tp / n_pred, tp / n_gt
        assert s[f"tp_{pct}"] == tp
        assert s[f"precision_{pct}"] == pytest.approx(precision)
        assert s[f"recall_{pct}"] == pytest.approx(recall)
        assert s[f"f1_{pct}"] == pytest.approx(2 * precision * recall / (precision + recall))

    # no fallback: a segment whose best object is taken is a false positive, even when
    # another object would pass (objects A = row 0, B = row 1, 8 px each)
    gt = np.array([[[1] * 8, [2] * 8]])
    pred = np.array([[[0] * 4 + [1] * 4, [1] * 4 + [2] * 4]])  # slot 2: background
    # slot 0: half of A (IoU 0.5); slot 1: 4 px of A and 4 of B, IoU 4/12 with each: the
    # tie goes to A (lower id), already taken by the more confident slot 0
    evaluation = Evaluation(ari=paper_ari, thresholds=(0.25,))
    evaluation.add_video("f", gt, pred, background=2, scores=np.array([[0.9, 0.5, 0.0]]))
    assert evaluation.summary()["tp_25"] == 1
