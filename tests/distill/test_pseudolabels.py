"""Teacher pseudo-labels on hand-made attention maps (paper 3.3, docs/distillation.md, paper eq. 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from stages.distill.pseudolabels import (
    REFERENCE_MIN_AREA_FRACTION,
    PseudoLabelConfig,
    teacher_candidates,
)
from stages.errors import UserError

K = 5
BG = K - 1


def attention(labels: torch.Tensor, slot_prob: torch.Tensor | float = 0.95) -> torch.Tensor:
    """Soft maps (F, K, h, w) whose argmax is ``labels``: the pixel's slot gets ``slot_prob``,
    the background slot the rest (W_fg = slot_prob); background pixels are pure background."""
    labels = labels.long()
    prob = torch.as_tensor(slot_prob, dtype=torch.float32).expand(labels.shape)
    prob = torch.where(labels == BG, 1.0, prob)
    maps = torch.nn.functional.one_hot(labels, K).permute(0, 3, 1, 2).float() * prob.unsqueeze(1)
    maps[:, BG] += 1.0 - prob
    return maps


def blank(frames: int = 1, h: int = 12, w: int = 16) -> torch.Tensor:
    return torch.full((frames, h, w), BG, dtype=torch.long)


def candidate_masks(result, frame: int) -> list[torch.Tensor]:
    return [result.masks[frame, c] for c in range(result.masks.shape[1]) if result.valid[frame, c]]


def test_two_regions_of_one_slot_are_two_candidates():
    labels = blank()
    labels[0, 1:4, 1:5] = 2  # 12 px
    labels[0, 7:11, 9:14] = 2  # 20 px, not touching the first
    maps = attention(labels)
    maps[0, 2, 1:4, 1:5] = 0.93  # make the small region the less confident one
    maps[0, BG, 1:4, 1:5] = 0.07
    result = teacher_candidates(maps, PseudoLabelConfig())
    assert result.masks.shape == (1, 2, 12, 16)
    assert result.valid.tolist() == [[True, True]]
    big, small = candidate_masks(result, 0)  # sorted by decreasing confidence
    assert big.sum() == 20 and big[7:11, 9:14].all()
    assert small.sum() == 12 and small[1:4, 1:5].all()
    assert result.scores[0].tolist() == pytest.approx([0.95, 0.93])


def test_low_confidence_region_dropped():
    labels = blank()
    labels[0, 0:4, 0:4] = 1
    labels[0, 6:10, 8:12] = 1
    prob = torch.full(labels.shape, 0.95)
    prob[0, 6:10, 8:12] = 0.7  # argmax still slot 1, but W_fg = 0.7 < 0.9
    result = teacher_candidates(attention(labels, prob), PseudoLabelConfig())
    (kept,) = candidate_masks(result, 0)
    assert kept[0:4, 0:4].all() and kept.sum() == 16
    assert result.scores[0, 0].item() == pytest.approx(0.95)


def test_background_slot_never_a_candidate_even_when_w_fg_is_high():
    labels = blank()
    maps = attention(labels)
    # Background wins the argmax narrowly (0.24) although W_fg = 0.76 passes the threshold.
    maps[0, :, 2:8, 2:8] = torch.tensor([0.23, 0.23, 0.23, 0.07, 0.24]).view(K, 1, 1)
    assert (maps.argmax(1) == BG).all()
    assert (1 - maps[0, BG, 2:8, 2:8] > 0.75).all()
    result = teacher_candidates(maps, PseudoLabelConfig(threshold=0.75))
    assert not result.valid.any()
    assert not result.masks.any()


def test_slot_zero_is_a_candidate():
    labels = blank()
    labels[0, 3:7, 3:7] = 0
    result = teacher_candidates(attention(labels), PseudoLabelConfig())
    (mask,) = candidate_masks(result, 0)
    assert torch.equal(mask, labels[0] == 0)


def test_area_must_exceed_min_area_fraction():
    labels = blank()  # 12x16 = 192 px
    labels[0, 0, 0:10] = 1  # exactly 10 px: dropped
    labels[0, 5, 0:11] = 2  # 11 px: kept
    result = teacher_candidates(attention(labels), PseudoLabelConfig(min_area_fraction=10 / 192))
    (mask,) = candidate_masks(result, 0)
    assert torch.equal(mask, labels[0] == 2)


@pytest.mark.parametrize(
    "size, smallest_kept",
    [((120, 242), 11), ((92, 312), 10), ((24, 80), 1)],  # the reference's map, KITTI, synth-cpu
)
def test_default_floor_is_the_references_share_of_any_map(size, smallest_kept):
    """The reference keeps more than 10 px of its 120x242 maps; the same share of the map
    elsewhere, so that a 1 px candidate of a 24x80 map (0.05 % of it) is not barred."""
    labels = blank(h=size[0], w=size[1])
    labels[0, 0, :smallest_kept] = 1
    labels[0, 5, : smallest_kept - 1] = 2
    result = teacher_candidates(attention(labels), PseudoLabelConfig())
    (mask,) = candidate_masks(result, 0)
    assert torch.equal(mask, labels[0] == 1)
    assert PseudoLabelConfig().min_area_fraction == REFERENCE_MIN_AREA_FRACTION


def test_one_to_one_gives_one_candidate_per_slot():
    labels = blank()
    labels[0, 0:3, 0:4] = 1
    labels[0, 8:11, 10:14] = 1
    labels[0, 5:8, 5:9] = 3
    prob = torch.full(labels.shape, 0.95)
    prob[0, 8:11, 10:14] = 0.91
    maps = attention(labels, prob)
    many = teacher_candidates(maps, PseudoLabelConfig(connection="one-to-many"))
    one = teacher_candidates(maps, PseudoLabelConfig(connection="one-to-one"))
    assert many.valid.sum() == 3
    assert one.valid.sum() == 2
    masks = candidate_masks(one, 0)
    assert any(torch.equal(m, labels[0] == 1) for m in masks)
    assert any(torch.equal(m, labels[0] == 3) for m in masks)
    slot1 = next(c for c in range(2) if torch.equal(one.masks[0, c], labels[0] == 1))
    assert one.scores[0, slot1].item() == pytest.approx(0.93)


def test_diagonal_pixels_are_separate_regions():
    labels = blank()
    labels[0, 0:4, 0:4] = 2
    labels[0, 4:8, 4:8] = 2  # touches the first block only at a corner
    result = teacher_candidates(attention(labels), PseudoLabelConfig())
    assert result.valid.sum() == 2


def test_regions_never_join_across_frames():
    labels = blank(frames=2)
    labels[0, 8:12, 0:6] = 1  # touches the bottom edge of frame 0
    labels[1, 0:4, 0:6] = 1  # touches the top edge of frame 1
    result = teacher_candidates(attention(labels), PseudoLabelConfig())
    assert result.valid.tolist() == [[True], [True]]
    assert result.masks[0, 0].sum() == 24 and result.masks[1, 0].sum() == 24


def test_padding_across_frames():
    labels = blank(frames=3)
    labels[0, 0:4, 0:4] = 0
    labels[0, 6:10, 6:10] = 1
    labels[0, 0:4, 10:14] = 2
    labels[2, 5:9, 5:9] = 3
    result = teacher_candidates(attention(labels), PseudoLabelConfig())
    assert result.masks.shape == (3, 3, 12, 16)
    assert result.valid.tolist() == [[True] * 3, [False] * 3, [True, False, False]]
    assert not result.masks[~result.valid].any()
    assert (result.scores[~result.valid] == 0).all()


def test_no_candidate_anywhere_still_has_one_padded_column():
    result = teacher_candidates(attention(blank(frames=2)), PseudoLabelConfig())
    assert result.masks.shape == (2, 1, 12, 16)
    assert not result.valid.any()


def test_slot_score_map_uses_the_candidates_own_map():
    labels = blank()
    labels[0, 2:6, 2:6] = 1
    maps = attention(labels)
    # Slot 1 wins with 0.85, three other foreground slots hold 0.04 each, background 0.03:
    # W_fg = 0.97 passes 0.9 but the slot's own map (0.85) does not.
    maps[0, :, 2:6, 2:6] = torch.tensor([0.04, 0.85, 0.04, 0.04, 0.03]).view(K, 1, 1)
    assert teacher_candidates(maps, PseudoLabelConfig(score_map="fg")).valid.sum() == 1
    assert teacher_candidates(maps, PseudoLabelConfig(score_map="slot")).valid.sum() == 0


def test_bfloat16_maps():
    labels = blank()
    labels[0, 2:6, 2:6] = 1
    result = teacher_candidates(attention(labels).bfloat16(), PseudoLabelConfig())
    assert result.valid.sum() == 1 and result.scores.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 1.0},
        {"threshold": -0.1},
        {"min_area_fraction": -0.01},
        {"min_area_fraction": 1.0},
        {"connection": "all"},
    ],
)
def test_bad_config_is_a_user_error(kwargs):
    with pytest.raises(UserError):
        PseudoLabelConfig(**kwargs)


def reference_candidates(labels: np.ndarray, w_fg: np.ndarray, threshold: float, min_area: int):
    """Plain per-frame, per-slot scipy labelling: an independent implementation, with the
    area floor in pixels."""
    found = []
    for f in range(labels.shape[0]):
        for slot in range(BG):
            regions, count = ndimage.label(labels[f] == slot)
            for r in range(1, count + 1):
                region = regions == r
                score = w_fg[f][region].astype(np.float64).mean()
                if region.sum() > min_area and score > threshold:
                    found.append((f, region.tobytes()))
    return sorted(found)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    frames=st.integers(1, 3),
    cell=st.integers(1, 4),
    min_area=st.sampled_from([0, 3, 10]),
)
def test_matches_per_slot_scipy_labelling(seed, frames, cell, min_area):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, K, size=(frames, 12 // cell + 1, 16 // cell + 1))
    labels = np.kron(coarse, np.ones((1, cell, cell), dtype=np.int64))[:, :12, :16]
    prob = rng.choice([0.8, 0.95, 0.99], size=labels.shape).astype(np.float32)
    maps = attention(torch.from_numpy(labels), torch.from_numpy(prob))
    w_fg = (1 - maps[:, BG]).numpy()
    config = PseudoLabelConfig(threshold=0.9, min_area_fraction=min_area / labels[0].size)
    result = teacher_candidates(maps, config)
    ours = sorted(
        (f, result.masks[f, c].numpy().tobytes())
        for f in range(frames)
        for c in range(result.masks.shape[1])
        if result.valid[f, c]
    )
    assert ours == reference_candidates(labels, w_fg, 0.9, min_area)
    for f in range(frames):
        scores = result.scores[f][result.valid[f]]
        assert torch.all(scores[:-1] >= scores[1:])
