"""Metrics: ARI against scikit-learn, F1@K hand cases, buckets, motion split, resizing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from stages import metrics
from stages.metrics import (
    Evaluation,
    ari_from_tables,
    clip_tables,
    compact_labels,
    contingency_tables,
    count_objects,
    greedy_match,
    resize_nearest,
    sample_ari,
)


def _ari(true: np.ndarray, pred: np.ndarray) -> float:
    """Our ARI of one sample through the path the stage uses (compact, table, pair counts)."""
    t, _ = compact_labels(true.ravel())
    p, _ = compact_labels(pred.ravel())
    return float(
        ari_from_tables(
            contingency_tables(t[None], p[None], t.max(initial=0) + 1, p.max(initial=0) + 1)
        )[0]
    )


# -- ARI ------------------------------------------------------------------------------------


def test_ari_matches_sklearn_on_random_label_maps():
    rng = np.random.default_rng(0)
    for _ in range(400):
        h, w = rng.integers(1, 30, 2)
        true = rng.integers(0, rng.integers(1, 8), (h, w))
        if rng.random() < 0.5:  # blocky maps: realistic, far from independent
            pred = (true * rng.integers(1, 4) + (rng.random((h, w)) < rng.random() * 0.3)) % 6
        else:
            pred = rng.integers(0, rng.integers(1, 50), (h, w))
        assert _ari(true, pred) == pytest.approx(
            adjusted_rand_score(true.ravel(), pred.ravel()), abs=1e-9
        )


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.int64, st.integers(0, 60), elements=st.integers(0, 5)),
    st.integers(0, 2**31),
)
def test_ari_matches_sklearn_hypothesis(true, seed):
    pred = np.random.default_rng(seed).integers(0, 4, true.shape)
    assert _ari(true, pred) == pytest.approx(adjusted_rand_score(true, pred), abs=1e-9)


@pytest.mark.parametrize(
    "true, pred",
    [
        (np.zeros(50, int), np.zeros(50, int)),  # single cluster both
        (np.zeros(50, int), np.arange(50) % 3),  # single GT cluster, several predicted
        (np.arange(50) % 3, np.zeros(50, int)),  # several GT, one predicted cluster
        (np.arange(50), np.arange(50)[::-1]),  # all singletons
        (np.arange(50), np.zeros(50, int)),
        (np.zeros(0, int), np.zeros(0, int)),  # empty sample (e.g. empty foreground)
        (np.array([3]), np.array([7])),  # one pixel
        (np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])),  # permuted ids
    ],
)
def test_ari_edge_cases(true, pred):
    assert _ari(true, pred) == pytest.approx(adjusted_rand_score(true, pred), abs=1e-9)


def test_ari_batched_fg_all_and_clip_match_sklearn():
    rng = np.random.default_rng(1)
    frames, h, w = 7, 92, 312
    gt = np.zeros((frames, h, w), np.int64)
    for ident in (5, 300, 70000, 9):  # sparse, large ids exercise compaction
        y, x = rng.integers(0, h - 30), rng.integers(0, w - 60)
        gt[:, y : y + rng.integers(5, 30), x : x + rng.integers(5, 60)] = ident
    pred = (gt % 7 + (rng.random(gt.shape) < 0.2) * rng.integers(0, 45, gt.shape)) % 45
    gt_c, ids = compact_labels(gt)
    assert ids[0] == 0 and list(ids[1:]) == [5, 9, 300, 70000]
    tables = contingency_tables(gt_c, pred, len(ids), 45)
    fg, full, kept = sample_ari(tables, ids)
    objects = count_objects(tables)
    for t in range(frames):
        fgmask = gt[t] > 0
        assert fg[t] == pytest.approx(adjusted_rand_score(gt[t][fgmask], pred[t][fgmask]), abs=1e-9)
        assert full[t] == pytest.approx(
            adjusted_rand_score(gt[t].ravel(), pred[t].ravel()), abs=1e-9
        )
        assert objects[t] == len(np.unique(gt[t])) - 1 and kept[t] == (objects[t] >= 2)
    clips = clip_tables(tables, 3)  # 3 + 3 + 1 frames; n = 3*92*312 per clip: float64 path
    assert len(clips) == 3
    cfg, cfull, _ = sample_ari(clips, ids)
    for c, (a, b) in enumerate([(0, 3), (3, 6), (6, 7)]):
        g, p = gt[a:b].ravel(), pred[a:b].ravel()
        assert cfull[c] == pytest.approx(adjusted_rand_score(g, p), abs=1e-9)
        assert cfg[c] == pytest.approx(adjusted_rand_score(g[g > 0], p[g > 0]), abs=1e-9)


def test_contingency_chunks_agree(monkeypatch):
    rng = np.random.default_rng(2)
    gt, pred = rng.integers(0, 4, (9, 10, 11)), rng.integers(0, 6, (9, 10, 11))
    whole = contingency_tables(gt, pred, 4, 6)
    monkeypatch.setattr(metrics, "CHUNK_PIXELS", 250)  # two frames per bincount
    np.testing.assert_array_equal(contingency_tables(gt, pred, 4, 6), whole)
    assert whole.sum() == gt.size and whole[3, 1, 2] == ((gt[3] == 1) & (pred[3] == 2)).sum()
    with pytest.raises(ValueError, match="ids outside"):
        contingency_tables(gt, pred, 3, 6)


def test_compact_labels_both_paths():
    small = np.array([[0, 7, 7], [2, 0, 2]])
    c, ids = compact_labels(small)
    assert list(ids) == [0, 2, 7] and c.tolist() == [[0, 2, 2], [1, 0, 1]]
    big = np.array([[5, 1 << 24], [5, 5]])  # no background present, huge id: sort path
    c, ids = compact_labels(big)
    assert list(ids) == [0, 5, 1 << 24] and c.tolist() == [[1, 2], [1, 1]]


# -- resizing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "src, dst", [((375, 1242), (92, 312)), ((7, 5), (20, 13)), ((9, 9), (9, 9))]
)
def test_resize_nearest_matches_pil(src, dst):
    labels = np.random.default_rng(3).integers(0, 1000, src).astype(np.int32)
    expected = np.asarray(Image.fromarray(labels, mode="I").resize(dst[::-1], Image.NEAREST))
    np.testing.assert_array_equal(resize_nearest(labels, dst), expected)
    stacked = resize_nearest(np.stack([labels, labels + 1]), dst)
    assert stacked.shape == (2, *dst) and (stacked[1] == expected + 1).all()


# -- F1@K -----------------------------------------------------------------------------------

BG = 9  # background slot of the hand cases (K = 10)


def _score(gt, pred, *, scores=None, background=BG, thresholds=metrics.IOU_THRESHOLDS, moving=None):
    ev = Evaluation(thresholds=thresholds)
    ev.add_video(
        "v",
        np.asarray(gt),
        np.asarray(pred),
        background=background,
        scores=scores,
        moving_ids=moving,
    )
    return ev, ev.summary()


def _frame(*boxes, fill=0, size=(8, 8)):
    """A label map: ``fill`` everywhere, then (id, y0, y1, x0, x1) boxes painted in order."""
    out = np.full(size, fill, np.int64)
    for ident, y0, y1, x0, x1 in boxes:
        out[y0:y1, x0:x1] = ident
    return out


def test_perfect_prediction_scores_one():
    gt = _frame((1, 0, 4, 0, 4), (2, 4, 8, 4, 8), (3, 0, 2, 5, 8))
    pred = np.where(gt == 0, BG, gt + 2)  # ids renamed, background on the background slot
    _, s = _score(gt[None], pred[None])
    for k in ("f1_25", "f1_50", "f1_75", "precision", "recall", "fg_ari", "all_ari", "miou"):
        assert s[k] == 1.0, k
    assert s["n_gt"] == 3 and s["n_pred"] == 3 and s["n_samples"] == 1 and s["n_skipped"] == 0


def test_iou_exactly_half_is_not_a_true_positive():
    gt = _frame((1, 0, 2, 0, 2), (2, 4, 6, 4, 6))  # two objects of 4 pixels
    pred = _frame((0, 0, 1, 0, 2), (1, 4, 6, 4, 5), fill=BG)  # 2 of 4 pixels each: IoU 0.5
    _, s = _score(gt[None], pred[None])
    assert s["tp_50"] == 0 and s["f1_50"] == 0.0 and s["tp_25"] == 2
    pred = _frame((0, 0, 2, 0, 2), (1, 4, 6, 4, 5), (1, 4, 5, 5, 6), fill=BG)  # IoU 1 and 0.75
    _, s = _score(gt[None], pred[None])
    assert s["tp_50"] == 2 and s["tp_75"] == 1  # 0.75 is not > 0.75 either


def test_two_predictions_on_one_gt_are_one_tp_one_fp():
    gt = _frame((1, 0, 5, 0, 2))  # 10 pixels
    pred = _frame((0, 0, 3, 0, 2), (1, 3, 5, 0, 2), fill=BG)  # 6 px (IoU .6) + 4 px (IoU .4)
    for thr in (0.25, 0.5):  # at 0.25 both overlap enough, still only one may take the GT
        _, s = _score(gt[None], pred[None], thresholds=(thr,))
        key = f"{round(thr * 100)}"
        assert s[f"tp_{key}"] == 1 and s["n_pred"] == 2
        assert s[f"precision_{key}"] == 0.5 and s[f"recall_{key}"] == 1.0
        assert s[f"f1_{key}"] == pytest.approx(2 / 3)


def test_predictions_in_a_frame_without_gt_are_false_positives():
    gt = np.stack([_frame((1, 0, 4, 0, 4), (2, 4, 8, 4, 8)), _frame()])
    pred = np.stack([np.where(gt[0] == 0, BG, gt[0]), _frame((3, 2, 6, 2, 6), fill=BG)])
    ev, s = _score(gt, pred)
    assert s["tp_50"] == 2 and s["n_pred"] == 3 and s["n_gt"] == 2
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == 1.0
    assert s["n_samples"] == 1 and s["n_skipped"] == 1  # the empty frame is no ARI sample
    rows = ev.per_frame()
    assert [r["tp_50"] for r in rows] == [2, 0] and [r["n_pred"] for r in rows] == [2, 1]
    assert rows[1]["fg_ari"] is None and rows[1]["miou"] is None


def test_background_slot_never_counts():
    gt = _frame((1, 0, 4, 0, 4), (2, 4, 8, 4, 8))
    pred = _frame((BG, 0, 4, 0, 4), (3, 4, 8, 4, 8), fill=4)  # object 1 exactly = background slot
    _, s = _score(gt[None], pred[None])
    assert s["n_pred"] == 2 and s["tp_50"] == 1 and s["recall"] == 0.5  # slot 4 (GT bg) is an FP
    swapped = np.where(pred == BG, 0, np.where(pred == 0, BG, pred))  # background id 0 (masks)
    _, s0 = _score(gt[None], swapped[None], background=0)
    assert (s0["n_pred"], s0["tp_50"]) == (2, 1)
    _, everything = _score(gt[None], pred[None], background=None)  # no background: 3 segments
    assert everything["n_pred"] == 3 and everything["tp_50"] == 2


def test_scores_order_the_greedy_matching():
    # GT of 40 px; slot 0: 28 px of it (IoU .7, medium), slot 1: 12 px (IoU .3, small).
    gt = _frame((1, 0, 4, 0, 10), size=(64, 64))
    pred = _frame((0, 0, 4, 0, 7), (1, 0, 4, 7, 10), fill=BG, size=(64, 64))
    for winner, loser in ((0, 1), (1, 0)):
        conf = np.zeros((1, 10))
        conf[0, winner], conf[0, loser] = 0.9, 0.8
        _, s = _score(gt[None], pred[None], scores=conf, thresholds=(0.25,))
        assert s["tp_25"] == 1
        won = "medium" if winner == 0 else "small"
        lost = "small" if winner == 0 else "medium"
        assert s["by_size"][won]["precision"] == 1.0 and s["by_size"][lost]["precision"] == 0.0


def test_greedy_match_visits_by_descending_score_across_frames():
    # predictions 0 and 1 want GT 0, 2 wants GT 1, 3 wants GT 1 but overlaps too little
    best_gt = np.array([0, 0, 1, 1])
    best_iou = np.array([0.9, 0.6, 0.7, 0.5])
    assert greedy_match(np.array([0.1, 0.2, 0.3, 0.9]), best_gt, best_iou, 0.5).tolist() == [
        False,
        True,
        True,
        False,
    ]
    assert greedy_match(np.array([0.5, 0.2, 0.3, 0.9]), best_gt, best_iou, 0.5).tolist() == [
        True,
        False,
        True,
        False,
    ]
    ties = greedy_match(np.ones(4), best_gt, best_iou, 0.5)  # ties: input order
    assert ties.tolist() == [True, False, True, False]


def test_size_buckets_and_motion_split():
    frame = (64, 64)  # 4096 px: small < 13.65 px, medium < 122.9 px
    gt = _frame(
        (1, 0, 2, 0, 5), (2, 10, 20, 0, 10), (3, 30, 50, 30, 50), size=frame
    )  # 10, 100, 400 px
    pred = _frame((0, 0, 2, 0, 5), (1, 30, 50, 30, 50), (2, 60, 64, 60, 64), fill=BG, size=frame)
    _, s = _score(gt[None], pred[None], moving={1, 3})
    assert [s["by_size"][b]["n_gt"] for b in metrics.SIZE_NAMES] == [1, 1, 1]
    assert [s["by_size"][b]["n_pred"] for b in metrics.SIZE_NAMES] == [1, 1, 1]  # 10, 16, 400 px
    assert s["by_size"]["small"]["recall"] == 1.0 and s["by_size"]["medium"]["recall"] == 0.0
    assert s["by_size"]["medium"]["precision"] == 0.0 and s["by_size"]["large"]["f1"] == 1.0
    moving, static = s["by_motion"]["moving"], s["by_motion"]["static"]
    assert (moving["recall"], moving["n_gt"], moving["miou"]) == (1.0, 2, 1.0)
    assert static["recall"] == 0.0 and static["n_gt"] == 1
    # objects 1 and 3 move (small, large), object 2 (medium) stays
    assert {b: v["n_gt"] for b, v in moving["by_size"].items()} == dict(small=1, medium=0, large=1)
    assert moving["by_size"]["large"]["recall"] == 1.0
    assert np.isnan(moving["by_size"]["medium"]["recall"])
    assert static["by_size"]["medium"] == {"recall": 0.0, "n_gt": 1}
    _, no_motion = _score(gt[None], pred[None])
    assert no_motion["by_motion"] is None


def test_object_groups_and_conditions_split_the_headline_scores():
    day_gt = _frame((1, 0, 4, 0, 4), (2, 4, 8, 4, 8))
    day_pred = _frame((0, 0, 4, 0, 4), fill=BG)  # finds object 1 only
    night_gt = _frame((1, 0, 4, 0, 4), (2, 4, 8, 4, 8), (3, 0, 2, 5, 8))
    night_pred = _frame((0, 0, 4, 0, 4), (1, 4, 8, 4, 8), (2, 6, 8, 0, 2), fill=BG)  # 2 TP, 1 FP
    ev = Evaluation()
    ev.add_video("day", day_gt[None], day_pred[None], background=BG, groups={"weak": {2}})
    ev.add_video(
        "night",
        night_gt[None],
        night_pred[None],
        background=BG,
        groups={"weak": {2, 3}},
        conditions={"night"},
    )
    ev.add_video("unrecorded", day_gt[None], day_pred[None], background=BG)
    s = ev.summary()
    weak = s["by_group"]["weak"]
    # members: day 2 (missed), night 2 (found), night 3 (missed); the third video records nothing
    assert weak["members"]["n_gt"] == 3 and weak["members"]["recall"] == pytest.approx(1 / 3)
    assert weak["others"]["n_gt"] == 2 and weak["others"]["recall"] == 1.0
    night = s["by_condition"]["night"]
    assert night["with"]["n_videos"] == 1 and night["without"]["n_videos"] == 2
    assert night["with"]["precision"] == pytest.approx(2 / 3)
    assert night["with"]["recall"] == pytest.approx(2 / 3)
    assert night["with"]["f1"] == pytest.approx(2 / 3)
    assert night["without"]["precision"] == 1.0 and night["without"]["recall"] == 0.5
    # the split adds up to the whole: 4 TP of 5 predictions and 7 objects
    assert s["tp_50"] == 4 and s["n_pred"] == 5 and s["n_gt"] == 7
    assert night["with"]["all_ari"] == pytest.approx(_ari(night_gt, night_pred))
    clips = Evaluation(clip_len=1)  # one-frame clips: the same ARI samples
    clips.add_video("day", day_gt[None], day_pred[None], background=BG)
    clips.add_video("night", night_gt[None], night_pred[None], background=BG, conditions={"night"})
    assert clips.summary()["by_condition"]["night"]["with"]["all_ari"] == night["with"]["all_ari"]
    plain = Evaluation()
    plain.add_video("day", day_gt[None], day_pred[None], background=BG)
    assert plain.summary()["by_group"] == {} and plain.summary()["by_condition"] == {}


def test_valid_pixels_are_the_only_ones_scored():
    gt = _frame((1, 0, 4, 0, 4), (2, 4, 8, 4, 8))
    pred = _frame((0, 0, 4, 0, 2), (1, 4, 8, 4, 8), fill=BG)  # half of object 1: IoU 0.5
    valid = np.zeros(gt.shape, bool)
    valid[:, :2] = True  # the columns where object 1 is found; object 2 unseen
    tables = contingency_tables(gt[None], pred[None], 3, BG + 1, valid[None])
    np.testing.assert_array_equal(
        tables[0], contingency_tables(gt[None, :, :2], pred[None, :, :2], 3, BG + 1)[0]
    )
    ev = Evaluation()
    ev.add_video("v", gt[None], pred[None], background=BG, valid=valid[None])
    s = ev.summary()
    assert s["n_gt"] == 1 and s["n_pred"] == 1 and s["f1_50"] == 1.0
    assert s["by_size"]["large"]["n_gt"] == 1  # half of the 16 valid pixels


def test_miou_is_the_best_overlap_per_gt_object():
    gt = _frame((1, 0, 4, 0, 4), (2, 4, 8, 4, 8))
    pred = _frame((0, 0, 4, 0, 2), (1, 0, 4, 2, 4), fill=BG)  # halves of object 1; object 2 missed
    _, s = _score(gt[None], pred[None])
    assert s["miou"] == pytest.approx((0.5 + 0.0) / 2)


def test_clip_granularity_and_skip_rule():
    rng = np.random.default_rng(4)
    gt = np.zeros((5, 16, 16), np.int64)
    gt[:, :8, :8], gt[:3, 8:, 8:] = 1, 2  # object 2 only in frames 0-2: frames 3, 4 skipped
    pred = np.where(rng.random(gt.shape) < 0.8, gt, rng.integers(0, 3, gt.shape))
    pred = np.where(pred == 0, BG, pred)
    frame_ev, f = _score(gt, pred)
    assert f["n_samples"] == 3 and f["n_skipped"] == 2
    expected = np.mean(
        [adjusted_rand_score(gt[t][gt[t] > 0], pred[t][gt[t] > 0]) for t in range(3)]
    )
    assert f["fg_ari"] == pytest.approx(expected, abs=1e-12)
    ev = Evaluation(clip_len=2)
    ev.add_video("v", gt, pred, background=BG)
    c = ev.summary()
    assert c["granularity"] == "clip" and c["n_samples"] == 2 and c["n_skipped"] == 1
    g, p = gt[:2].ravel(), pred[:2].ravel()
    assert ev.per_clip()[0]["all_ari"] == pytest.approx(adjusted_rand_score(g, p), abs=1e-12)
    assert ev.per_clip()[2]["fg_ari"] is None and ev.per_clip()[2]["n_frames"] == 1
    assert c["f1_50"] == f["f1_50"]  # F1 is per frame whatever the ARI sample


def test_nothing_scored_gives_nan_not_an_error():
    _, s = _score(np.zeros((2, 4, 4), np.int64), np.full((2, 4, 4), BG))
    assert math.isnan(s["fg_ari"]) and math.isnan(s["precision"]) and math.isnan(s["f1_50"])
    assert s["n_samples"] == 0 and s["n_skipped"] == 2
