"""Object-discovery scores of predicted label maps against ground-truth instances (paper
4.2, docs/eval.md).

Every number here derives from one contingency table per frame: the pixel counts of each
(GT id, predicted id) pair, built for many frames by a single ``np.bincount`` over pair codes.
The table gives the ARI (pair counts), the areas of GT objects and predicted segments (its
margins) and every IoU (intersection over margins minus intersection), so the pixels are read
once and the rest is arithmetic on small arrays. A clip's table is the sum of its frames'
tables, which is how clip-level ARI (TRI-PD) comes for free.

Conventions: GT id 0 is background; a predicted map carries one background id (the
background slot, or 0 for motion masks) whose region is never a segment but is one cluster
for the ARI. Scores are fractions in [0, 1]; a ratio with an empty denominator is NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: IoU thresholds of the F1 scores (F1@50 is the paper's; 25 and 75 bracket it)
IOU_THRESHOLDS: tuple[float, ...] = (0.25, 0.5, 0.75)
#: Object-size bucket edges as fractions of the frame area: COCO's 32^2 and 96^2 pixels
#: divided by COCO's typical 640x480 frame, so the buckets mean the same at any resolution.
SIZE_EDGES: tuple[float, float] = (32**2 / (640 * 480), 96**2 / (640 * 480))
SIZE_NAMES: tuple[str, str, str] = ("small", "medium", "large")
#: Samples with fewer GT objects than this are skipped by the ARI (docs/eval.md: "< 2 objects")
MIN_OBJECTS: int = 2
#: Pixels per bincount call: bounds the int64 code array (~32 MiB) on long videos
CHUNK_PIXELS: int = 1 << 22


def resize_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) -> (..., h, w) by pixel-centre nearest neighbour (labels must not blend).

    Output pixel i samples source pixel floor((i + 0.5) * H / h), as PIL's NEAREST does:
    the sampled grid is centred, so neither edge is favoured (top-left-aligned nearest, e.g.
    torch's ``interpolate(mode="nearest")``, never samples the last rows of a downscale).
    """
    src_h, src_w = labels.shape[-2:]
    h, w = size
    if (src_h, src_w) == (h, w):
        return labels
    rows = (2 * np.arange(h) + 1) * src_h // (2 * h)
    cols = (2 * np.arange(w) + 1) * src_w // (2 * w)
    return labels[..., rows[:, None], cols[None, :]]


def compact_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relabel non-negative ids to 0..n-1 with 0 kept at 0; returns (compact, original ids).

    Compact ids keep the contingency tables small whatever the id range (16-bit KITTI codes,
    24-bit colour-coded TRI-PD masks). A bincount presence table is used when the id range
    is small (linear time), a sort otherwise.
    """
    if labels.size and labels.min() < 0:
        raise ValueError("label maps must hold non-negative ids")
    top = int(labels.max()) if labels.size else 0
    if top < max(1 << 16, labels.size):
        present = np.bincount(labels.ravel(), minlength=top + 1) > 0
        present[0] = True
        lut = (np.cumsum(present) - 1).astype(np.int32)
        return lut[labels], np.flatnonzero(present)
    values, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape).astype(np.int32)
    if values[0] != 0:
        values, inverse = np.concatenate([[0], values]), inverse + 1
    return inverse, values


def contingency_tables(
    gt: np.ndarray, pred: np.ndarray, n_gt: int, n_pred: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """Per-sample pixel counts of (GT id, predicted id): (S, ...) maps -> (S, n_gt, n_pred).

    Ids must lie in [0, n_gt) and [0, n_pred). Samples are coded ``(s * n_gt + g) * n_pred
    + p`` and counted by one bincount per chunk of samples. ``valid`` (S, ...) bool: only
    those pixels count (None: all).
    """
    if gt.shape != pred.shape or (valid is not None and valid.shape != gt.shape):
        raise ValueError(f"GT shape {gt.shape} differs from prediction shape {pred.shape}")
    samples = gt.shape[0]
    gt = gt.reshape(samples, -1)
    pred = pred.reshape(samples, -1)
    if valid is not None:
        valid = valid.reshape(samples, -1)
    if gt.size and (gt.min() < 0 or gt.max() >= n_gt or pred.min() < 0 or pred.max() >= n_pred):
        raise ValueError(f"ids outside [0, {n_gt}) x [0, {n_pred})")
    cells = n_gt * n_pred
    step = max(1, CHUNK_PIXELS // max(1, gt.shape[1]))
    out = np.empty((samples, n_gt, n_pred), np.int64)
    for start in range(0, samples, step):
        g, p = gt[start : start + step], pred[start : start + step]
        codes = g.astype(np.int64) * n_pred + p
        codes += (np.arange(len(g), dtype=np.int64) * cells)[:, None]
        if valid is not None:
            codes = codes[valid[start : start + step]]
        counts = np.bincount(codes.ravel(), minlength=len(g) * cells)
        out[start : start + len(g)] = counts.reshape(len(g), n_gt, n_pred)
    return out


def ari_from_tables(tables: np.ndarray) -> np.ndarray:
    """Adjusted Rand index of each contingency table (..., G, P), float64.

    The pair-confusion form scikit-learn uses: ordered pixel pairs that are together in
    both labelings (tp), apart in both (tn), or together in only one (fp, fn); ARI =
    2 (tp tn - fn fp) / ((tp + fn)(fn + tn) + (tp + fp)(fp + tn)), and 1 when the labelings
    agree on every pair (fp = fn = 0: one cluster each, all singletons, empty sample). Pair
    counts are exact in int64; the final products are float64 (they pass 2^63 on clips).
    """
    t = tables.astype(np.int64)
    n = t.sum((-2, -1))
    together_both = (t * t).sum((-2, -1))
    together_true = (t.sum(-1) ** 2).sum(-1)
    together_pred = (t.sum(-2) ** 2).sum(-1)
    tp = (together_both - n).astype(np.float64)
    fp = (together_pred - together_both).astype(np.float64)
    fn = (together_true - together_both).astype(np.float64)
    tn = (n * n - together_pred - together_true + together_both).astype(np.float64)
    num = 2.0 * (tp * tn - fn * fp)
    den = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    agree = (fp == 0) & (fn == 0)  # den > 0 whenever fp or fn is nonzero
    return np.divide(num, den, out=np.ones_like(num), where=~agree)


def count_objects(tables: np.ndarray) -> np.ndarray:
    """GT objects (non-background rows with pixels) of each (S, G, P) table."""
    return (tables[:, 1:, :].sum(-1) > 0).sum(-1)


#: (S, G, P) tables and the GT id of each row -> (fg-ARI, all-ARI, kept) per sample
AriRule = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def sample_ari(tables: np.ndarray, gt_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fg-ARI, all-ARI, kept) per sample of (S, G, P) tables, GT row 0 = bg: our rule.

    fg-ARI drops the background row (pixels of GT background); all-ARI keeps it as one
    cluster. A sample with fewer than ``MIN_OBJECTS`` objects is not kept: with one object
    the fg-ARI only says whether the prediction split it, and with none it is 1 by
    convention. ``gt_ids`` is unused: the rule counts objects, whatever their ids.
    """
    fg = tables[:, 1:, :]
    return ari_from_tables(fg), ari_from_tables(tables), count_objects(tables) >= MIN_OBJECTS


def video_fg_ari(table: np.ndarray) -> float:
    """fg-ARI of a whole video as one sample: its (G, P) table summed over the frames (hard
    slot ids, GT background row dropped), as VideoSAUR and SlotContrast report it on MOVi;
    NaN for a video without foreground pixels (nothing to score)."""
    fg = table[1:]
    return float(ari_from_tables(fg)) if fg.sum() else float("nan")


def best_overlaps(table: np.ndarray) -> np.ndarray:
    """For each GT object of a video's (G, P) table (rows 1.. with pixels), the best IoU
    over every predicted id, the background slot included (the MOVi literature scores every
    slot): IoU of video-level masks, i.e. over all the video's pixels."""
    gt_area, pred_area = table.sum(1), table.sum(0)
    union = gt_area[:, None] + pred_area[None, :] - table
    iou = np.divide(table, union, out=np.zeros(table.shape), where=union > 0)
    return iou[1:][gt_area[1:] > 0].max(-1, initial=0.0)


def clip_tables(tables: np.ndarray, clip_len: int) -> np.ndarray:
    """Sum consecutive frames' tables into clips of ``clip_len`` (the last one may be short).

    Summing tables is flattening the clip's pixels into one sample, valid because GT and
    predicted ids name the same object in every frame of a video.
    """
    return np.add.reduceat(tables, np.arange(0, len(tables), clip_len), axis=0)


def greedy_match(
    scores: np.ndarray, best_gt: np.ndarray, best_iou: np.ndarray, threshold: float
) -> np.ndarray:
    """True-positive flag of each prediction under the dataset-level greedy matching.

    Predictions are visited by descending score (ties: input order); each takes its max-IoU
    GT of its frame (``best_gt``, a dataset-wide GT index) and is a TP iff that IoU exceeds
    ``threshold`` strictly and no earlier prediction took that GT. A prediction's target does
    not depend on the order, so the visit reduces to "first candidate per GT in score order".
    """
    order = np.argsort(-scores, kind="stable")
    candidates = order[best_iou[order] > threshold]
    _, first = np.unique(best_gt[candidates], return_index=True)
    tp = np.zeros(len(scores), bool)
    tp[candidates[first]] = True
    return tp


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def _harmonic(p: float, r: float) -> float:
    if np.isnan(p) or np.isnan(r):
        return float("nan")
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _recall_count(matched: np.ndarray, member: np.ndarray) -> dict:
    """Recall and count of the GT objects in ``member``."""
    return {"recall": _ratio(matched[member].sum(), member.sum()), "n_gt": int(member.sum())}


def _recall_split(
    flags: np.ndarray,
    matched: np.ndarray,
    best_iou: np.ndarray,
    bucket: np.ndarray,
    kinds: tuple[str, str],
) -> dict:
    """Recall, count and mIoU of the GT objects flagged 1 (``kinds[0]``) and 0
    (``kinds[1]``), and their recall per size bucket (``bucket``: ``size_bucket`` of each
    object), since a kind's recall is mostly its size mix (static objects in a street are
    mostly small: far parked cars, people); objects flagged -1 (not recorded) are in neither."""
    out = {}
    for kind, flag in zip(kinds, (1, 0), strict=True):
        member = flags == flag
        out[kind] = {
            **_recall_count(matched, member),
            "miou": _mean(best_iou[member]),
            "by_size": {
                name: _recall_count(matched, member & (bucket == b))
                for b, name in enumerate(SIZE_NAMES)
            },
        }
    return out


def size_bucket(area_fraction: np.ndarray, edges: Sequence[float] = SIZE_EDGES) -> np.ndarray:
    """0 small, 1 medium, 2 large: ``fraction < edges[0]``, ``< edges[1]``, else large."""
    return np.searchsorted(np.asarray(edges), area_fraction, side="right")


@dataclass
class _Chunk:
    """Arrays of one video: its frames, predicted segments and GT objects."""

    frame_video: np.ndarray
    frame_name: list[str]
    frame_fg_ari: np.ndarray
    frame_all_ari: np.ndarray
    frame_kept: np.ndarray
    frame_objects: np.ndarray
    pred_frame: np.ndarray
    pred_score: np.ndarray
    pred_fraction: np.ndarray
    pred_best_gt: np.ndarray
    pred_best_iou: np.ndarray
    gt_frame: np.ndarray
    gt_fraction: np.ndarray
    gt_best_iou: np.ndarray
    gt_moving: np.ndarray
    #: per object group the dataset records: 1 member, 0 not (``Dataset.object_groups``)
    gt_groups: dict[str, np.ndarray] = field(default_factory=dict)
    conditions: frozenset[str] = frozenset()
    clips: list[dict] = field(default_factory=list)
    video_fg_ari: float = float("nan")
    video_mbo: float = float("nan")


class Evaluation:
    """Accumulates videos, then scores them all at once (F1 matching is dataset-level).

    ``clip_len`` None scores the ARI per frame (KITTI), an integer per clip of that many
    consecutive frames flattened (TRI-PD: 5). F1, mIoU and the per-frame rows are always
    per frame. ``ari`` computes the samples' ARIs and says which count (ours by default,
    ``protocol_metrics.paper_ari`` for the authors'). ``video_scores`` adds the video-level
    scores of the MOVi literature: ``video_fg_ari`` (each video one sample) and ``mbo``
    (mean best overlap of video-level masks), each averaged over the videos.
    """

    def __init__(
        self,
        clip_len: int | None = None,
        *,
        ari: AriRule = sample_ari,
        video_scores: bool = False,
        thresholds: Sequence[float] = IOU_THRESHOLDS,
        size_edges: Sequence[float] = SIZE_EDGES,
    ):
        if clip_len is not None and clip_len < 1:
            raise ValueError("clip_len must be >= 1")
        self.clip_len = clip_len
        self.ari = ari
        self.video_scores = video_scores
        self.thresholds = tuple(thresholds)
        self.size_edges = tuple(size_edges)
        self.videos: list[str] = []
        self._chunks: list[_Chunk] = []
        self._n_frames = 0
        self._n_gt = 0

    def add_video(
        self,
        name: str,
        gt: np.ndarray,
        pred: np.ndarray,
        *,
        background: int | None,
        scores: np.ndarray | None = None,
        moving_ids: Iterable[int] | None = None,
        groups: Mapping[str, Iterable[int]] | None = None,
        conditions: Iterable[str] = (),
        frame_names: Sequence[str] | None = None,
        valid: np.ndarray | None = None,
    ) -> None:
        """Score one video: ``gt`` (T, h, w) ids (0 = bg) already at the prediction size,
        ``pred`` (T, h, w) ids, ``background`` the predicted id that is no segment (None:
        every id is one), ``scores`` (T, >= max id + 1) per-id confidence (None: 1).
        ``groups`` (name -> GT ids) and ``conditions`` (the video's) are scored apart.
        ``valid`` (T, h, w) bool: score only these pixels (an object or segment without one
        is absent; sizes are shares of a frame's valid pixels), None: all."""
        if gt.shape != pred.shape or pred.ndim != 3:
            raise ValueError(f"GT {gt.shape} and prediction {pred.shape} must be equal (T, h, w)")
        frames, h, w = pred.shape
        gt_c, gt_ids = compact_labels(gt)
        n_pred = int(pred.max()) + 1 if pred.size else 1
        if background is not None:
            n_pred = max(n_pred, background + 1)
        if scores is not None:
            if scores.shape[0] != frames or scores.shape[1] < n_pred:
                raise ValueError(
                    f"scores {scores.shape} do not cover {frames} frames x {n_pred} ids"
                )
            n_pred = scores.shape[1]
        tables = contingency_tables(gt_c, pred, len(gt_ids), n_pred, valid)
        scored = np.full(frames, h * w) if valid is None else valid.reshape(frames, -1).sum(1)
        scored = np.maximum(scored, 1)
        fg, full, kept = self.ari(tables, gt_ids)

        gt_area = tables.sum(2)
        pred_area = tables.sum(1)
        gt_ok = gt_area > 0
        gt_ok[:, 0] = False
        pred_ok = pred_area > 0
        if background is not None:
            pred_ok[:, background] = False
        union = gt_area[:, :, None] + pred_area[:, None, :] - tables
        iou = np.divide(tables, union, out=np.zeros(tables.shape), where=union > 0)
        iou *= gt_ok[:, :, None] & pred_ok[:, None, :]

        gt_t, gt_g = np.nonzero(gt_ok)
        gt_index = np.full(gt_ok.shape, -1, np.int64)
        gt_index[gt_t, gt_g] = self._n_gt + np.arange(len(gt_t))
        pred_t, pred_p = np.nonzero(pred_ok)
        pred_iou = iou[pred_t, :, pred_p]  # (N, G)
        best_local = pred_iou.argmax(1) if len(pred_t) else np.zeros(0, np.int64)
        moving = np.full(len(gt_t), -1, np.int8)
        if moving_ids is not None:
            moving[:] = np.isin(gt_ids[gt_g], np.fromiter(moving_ids, np.int64))

        chunk = _Chunk(
            frame_video=np.full(frames, len(self.videos)),
            frame_name=list(frame_names)
            if frame_names is not None
            else [str(i) for i in range(frames)],
            frame_fg_ari=fg,
            frame_all_ari=full,
            frame_kept=kept,
            frame_objects=count_objects(tables),
            pred_frame=self._n_frames + pred_t,
            pred_score=(
                scores[pred_t, pred_p] if scores is not None else np.ones(len(pred_t))
            ).astype(np.float64),
            pred_fraction=pred_area[pred_t, pred_p] / scored[pred_t],
            pred_best_gt=gt_index[pred_t, best_local],
            pred_best_iou=pred_iou[np.arange(len(pred_t)), best_local],
            gt_frame=self._n_frames + gt_t,
            gt_fraction=gt_area[gt_t, gt_g] / scored[gt_t],
            gt_best_iou=iou[gt_t, gt_g].max(-1) if len(gt_t) else np.zeros(0),
            gt_moving=moving,
            gt_groups={
                name: np.isin(gt_ids[gt_g], np.fromiter(ids, np.int64)).astype(np.int8)
                for name, ids in (groups or {}).items()
            },
            conditions=frozenset(conditions),
        )
        if self.video_scores:
            video = tables.sum(0)
            chunk.video_fg_ari = video_fg_ari(video)
            chunk.video_mbo = _mean(best_overlaps(video))
        if self.clip_len is not None:
            per_clip = clip_tables(tables, self.clip_len)
            cfg, cfull, ckept = self.ari(per_clip, gt_ids)
            cobj = count_objects(per_clip)
            chunk.clips = [
                dict(
                    video=name,
                    clip=i,
                    first_frame=chunk.frame_name[i * self.clip_len],
                    n_frames=min(self.clip_len, frames - i * self.clip_len),
                    n_objects=int(cobj[i]),
                    fg_ari=float(cfg[i]),
                    all_ari=float(cfull[i]),
                    kept=bool(ckept[i]),
                )
                for i in range(len(cobj))
            ]
        self._chunks.append(chunk)
        self.videos.append(name)
        self._n_frames += frames
        self._n_gt += len(gt_t)

    def _cat(self, name: str) -> np.ndarray:
        parts = [getattr(c, name) for c in self._chunks]
        return np.concatenate(parts) if parts else np.zeros(0)

    def _samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fg-ARI, all-ARI, kept) of every ARI sample: frames or clips."""
        if self.clip_len is None:
            return (
                self._cat("frame_fg_ari"),
                self._cat("frame_all_ari"),
                self._cat("frame_kept").astype(bool),
            )
        clips = [c for chunk in self._chunks for c in chunk.clips]
        fg, full = (np.array([c[k] for c in clips], dtype=float) for k in ("fg_ari", "all_ari"))
        return fg, full, np.array([c["kept"] for c in clips], dtype=bool)

    def _matches(self) -> dict[float, np.ndarray]:
        score, best_gt, best_iou = (
            self._cat(k) for k in ("pred_score", "pred_best_gt", "pred_best_iou")
        )
        return {t: greedy_match(score, best_gt, best_iou, t) for t in self.thresholds}

    def summary(self) -> dict:
        """Every dataset-level score (the content of ``scores.json``)."""
        fg, full, kept = self._samples()
        n_pred, n_gt = len(self._cat("pred_score")), self._n_gt
        out: dict = {
            "fg_ari": _mean(fg[kept]),
            "all_ari": _mean(full[kept]),
            "n_samples": int(kept.sum()),
            "n_skipped": int((~kept).sum()),
            "n_videos": len(self.videos),
            "n_frames": self._n_frames,
            "n_gt": n_gt,
            "n_pred": n_pred,
            "granularity": "frame" if self.clip_len is None else "clip",
            "clip_len": self.clip_len,
        }
        if self.video_scores:
            for key, attr in (("video_fg_ari", "video_fg_ari"), ("mbo", "video_mbo")):
                values = np.array([getattr(c, attr) for c in self._chunks])
                out[key] = _mean(values[~np.isnan(values)])
        matches = self._matches()
        best_gt = self._cat("pred_best_gt")
        for t, tp in matches.items():
            pct = round(t * 100)
            n_tp = int(tp.sum())
            out[f"tp_{pct}"] = n_tp
            out[f"precision_{pct}"] = _ratio(n_tp, n_pred)
            out[f"recall_{pct}"] = _ratio(n_tp, n_gt)
            out[f"f1_{pct}"] = _ratio(2 * n_tp, n_pred + n_gt)
        if 0.5 in matches:
            out["precision"], out["recall"] = out["precision_50"], out["recall_50"]
        gt_best_iou = self._cat("gt_best_iou")
        out["miou"] = _mean(gt_best_iou)

        headline = matches.get(0.5, next(iter(matches.values())))
        matched = np.zeros(n_gt, bool)
        matched[best_gt[headline].astype(np.int64)] = True
        gt_bucket = size_bucket(self._cat("gt_fraction"), self.size_edges)
        pred_bucket = size_bucket(self._cat("pred_fraction"), self.size_edges)
        out["size_edges"] = list(self.size_edges)
        out["by_size"] = {}
        for b, bucket in enumerate(SIZE_NAMES):
            p = _ratio(headline[pred_bucket == b].sum(), (pred_bucket == b).sum())
            r = _ratio(matched[gt_bucket == b].sum(), (gt_bucket == b).sum())
            out["by_size"][bucket] = {
                "precision": p,
                "recall": r,
                "f1": _harmonic(p, r),
                "n_gt": int((gt_bucket == b).sum()),
                "n_pred": int((pred_bucket == b).sum()),
                "miou": _mean(gt_best_iou[gt_bucket == b]),
            }
        moving = self._cat("gt_moving")
        out["by_motion"] = None
        if (moving >= 0).any():
            out["by_motion"] = _recall_split(
                moving, matched, gt_best_iou, gt_bucket, ("moving", "static")
            )
        out["by_group"] = self._by_group(matched, gt_best_iou, gt_bucket)
        out["by_condition"] = self._by_condition(headline, matched)
        return out

    def _by_group(
        self, matched: np.ndarray, gt_best_iou: np.ndarray, gt_bucket: np.ndarray
    ) -> dict:
        """Recall@50 and mIoU of each recorded object group's members and of the other
        objects of the videos that record it (e.g. objects with weak LiDAR returns)."""
        names = sorted({name for c in self._chunks for name in c.gt_groups})
        out = {}
        for name in names:
            member = np.concatenate(
                [c.gt_groups.get(name, np.full(len(c.gt_moving), -1)) for c in self._chunks]
            )
            out[name] = _recall_split(
                member, matched, gt_best_iou, gt_bucket, ("members", "others")
            )
        return out

    def _by_condition(self, tp: np.ndarray, matched: np.ndarray) -> dict:
        """The headline scores (ARIs; F1, precision and recall at the headline IoU, as
        ``by_size``) of the videos under each recorded condition (e.g. night) and of the
        others: a prediction and its match lie in one frame, so the dataset-level matching
        splits exactly by video."""
        names = sorted({name for c in self._chunks for name in c.conditions})
        if not names:
            return {}
        frame_video = self._cat("frame_video").astype(np.int64)
        pred_video = frame_video[self._cat("pred_frame").astype(np.int64)]
        gt_video = frame_video[self._cat("gt_frame").astype(np.int64)]
        fg, full, kept = self._samples()
        if self.clip_len is None:
            sample_video = frame_video
        else:
            sample_video = np.repeat(
                np.arange(len(self._chunks)), [len(c.clips) for c in self._chunks]
            )
        out = {}
        for name in names:
            under = np.array([name in c.conditions for c in self._chunks])
            out[name] = {}
            for kind, flag in (("with", True), ("without", False)):
                pred, gt, sample = (
                    under[pred_video] == flag,
                    under[gt_video] == flag,
                    (under[sample_video] == flag) & kept,
                )
                n_tp, n_pred, n_gt = int(tp[pred].sum()), int(pred.sum()), int(gt.sum())
                out[name][kind] = {
                    "n_videos": int((under == flag).sum()),
                    "fg_ari": _mean(fg[sample]),
                    "all_ari": _mean(full[sample]),
                    "precision": _ratio(n_tp, n_pred),
                    "recall": _ratio(int(matched[gt].sum()), n_gt),
                    "f1": _ratio(2 * n_tp, n_pred + n_gt),
                }
        return out

    def per_frame(self) -> list[dict]:
        """One row per frame: counts, TPs at each threshold, mIoU and the frame's own ARI
        (None when the ARI rule does not keep the frame as a sample)."""
        n = self._n_frames
        pred_frame, gt_frame = (
            self._cat("pred_frame").astype(np.int64),
            self._cat("gt_frame").astype(np.int64),
        )
        n_pred = np.bincount(pred_frame, minlength=n)
        n_gt = np.bincount(gt_frame, minlength=n)
        iou_sum = np.bincount(gt_frame, weights=self._cat("gt_best_iou"), minlength=n)
        tps = {t: np.bincount(pred_frame[tp], minlength=n) for t, tp in self._matches().items()}
        videos = self._cat("frame_video").astype(np.int64)
        names = [name for c in self._chunks for name in c.frame_name]
        fg, full, objects, frame_kept = (
            self._cat(k) for k in ("frame_fg_ari", "frame_all_ari", "frame_objects", "frame_kept")
        )
        rows = []
        for i in range(n):
            kept = bool(frame_kept[i])
            row = {
                "video": self.videos[videos[i]],
                "frame": names[i],
                "n_objects": int(objects[i]),
                "n_gt": int(n_gt[i]),
                "n_pred": int(n_pred[i]),
            }
            row.update({f"tp_{round(t * 100)}": int(v[i]) for t, v in tps.items()})
            row["miou"] = float(iou_sum[i] / n_gt[i]) if n_gt[i] else None
            row["fg_ari"] = float(fg[i]) if kept else None
            row["all_ari"] = float(full[i]) if kept else None
            rows.append(row)
        return rows

    def per_clip(self) -> list[dict]:
        """One row per clip (clip granularity only), ARI None where skipped."""
        rows = []
        for c in (c for chunk in self._chunks for c in chunk.clips):
            row = {k: v for k, v in c.items() if k != "kept"}
            if not c["kept"]:
                row["fg_ari"] = row["all_ari"] = None
            rows.append(row)
        return rows
