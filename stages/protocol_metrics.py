"""The ARI as the authors compute it (the ``paper`` protocol, docs/eval.md "Protocols").

It works on the contingency tables of ``stages.metrics`` (pixel counts of every (GT id,
predicted id) pair), so it reads no pixels of its own.

The authors' ARI (CEA-LIST/DIOD ``utils.adjusted_rand_index``, inherited from Bao et al.'s
code) is the Kubric/SAVi formula on a one-hot GT and the one-hot ARGMAX of the predicted
maps: their evaluation scripts pass the soft attention maps, but the function takes their
argmax before counting, so hard slot ids are what it scores. Its conventions differ from
scikit-learn's, and they decide which samples count:

- the denominator carries a guard of ``1e-12``, so a table whose expected and maximum
  indices coincide scores 0 instead of being undefined (e.g. one GT category split by the
  prediction: numerator and denominator are 0 up to rounding, the ARI is 0);
- the result is 1 when the GT and the prediction are each one cluster over every pixel of
  the sample, background pixels included, even for the foreground ARI;
- with fewer than 2 pixels counted the expected index divides by zero and the ARI is NaN;
  their loop drops a sample whose fg-ARI is NaN from both means (the "unstable" case);
- a sample is skipped when ``one_hot(gt)`` has at most 2 columns, i.e. when its LARGEST GT
  id is at most 1. A sample whose only object has id 2 is therefore scored (fg-ARI 0 unless
  the whole sample is that object), which our "fewer than 2 objects" rule would skip.
"""

from __future__ import annotations

import numpy as np

#: the guard the authors add to the ARI's denominator
ARI_EPS: float = 1e-12
#: a sample counts when its largest GT id is at least this (``one_hot`` wider than 2 columns)
MIN_TOP_ID: int = 2


def kubric_ari(tables: np.ndarray, single: np.ndarray) -> np.ndarray:
    """ARI of each (..., G, P) table by the Kubric/SAVi formula with the authors' guard;
    1 where ``single`` (both labelings one cluster). Float64: the authors' float32 agreed
    within 2e-7 on random 5-frame 120 x 242 clips with 45 slots."""
    t = tables.astype(np.float64)
    n = t.sum((-2, -1))
    per_gt, per_pred = t.sum(-1), t.sum(-2)
    rindex = (t * (t - 1)).sum((-2, -1))
    gt_index = (per_gt * (per_gt - 1)).sum(-1)
    pred_index = (per_pred * (per_pred - 1)).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = pred_index * (gt_index / (n * (n - 1)))
    max_index = (pred_index + gt_index) / 2
    ari = (rindex - expected) / (max_index - expected + ARI_EPS)
    return np.where(single, 1.0, ari)


def paper_ari(tables: np.ndarray, gt_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fg-ARI, all-ARI, kept) per sample of (S, G, P) tables whose row g counts GT id
    ``gt_ids[g]`` (row 0 is id 0, the background), as the authors' scripts compute them.

    "One cluster" is judged as their code does, over every pixel of the sample, for the
    fg-ARI too: one GT id and one predicted id in the whole sample. (Their fg GT side puts
    background pixels in the group of id 1, the argmax of an all-zero one-hot row; that
    matters only for samples made of ids 0 and 1, which the skip rule drops.)
    """
    present = tables.sum(-1) > 0  # (S, G)
    single = ((tables.sum(-2) > 0).sum(-1) == 1) & (present.sum(-1) == 1)
    fg = kubric_ari(tables[:, 1:, :], single)
    full = kubric_ari(tables, single)
    top = np.where(present, gt_ids[None, :], -1).max(-1)
    return fg, full, (top >= MIN_TOP_ID) & ~np.isnan(fg)
