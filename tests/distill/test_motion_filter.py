"""Motion masks filtered by the teacher's W_fg (paper section 3.3.3, eq. 4)."""

from __future__ import annotations

import pytest
import torch

from stages.distill.motion_filter import filter_motion_masks


def boxes(frames: int, boxes_per_frame: list[list[tuple[int, int, int, int]]], size=(8, 10)):
    """Padded masks (F, M, h, w) and valid (F, M) from (y0, y1, x0, x1) boxes."""
    count = max(1, max(len(b) for b in boxes_per_frame))
    masks = torch.zeros(frames, count, *size, dtype=torch.bool)
    valid = torch.zeros(frames, count, dtype=torch.bool)
    for f, frame_boxes in enumerate(boxes_per_frame):
        for m, (y0, y1, x0, x1) in enumerate(frame_boxes):
            masks[f, m, y0:y1, x0:x1] = True
            valid[f, m] = True
    return masks, valid


def test_keeps_masks_on_confident_foreground_and_drops_noise():
    masks, valid = boxes(1, [[(0, 3, 0, 3), (5, 8, 5, 9)]])
    w_fg = torch.zeros(1, 8, 10)
    w_fg[0, 0:3, 0:3] = 0.96  # a real object under the teacher's foreground
    w_fg[0, 5:8, 5:9] = 0.3  # flow noise on the background
    out = filter_motion_masks(masks, valid, w_fg, threshold=0.9)
    assert out.valid.tolist() == [[True, False]]
    assert out.scores[0].tolist() == pytest.approx([0.96, 0.3])
    assert torch.equal(out.fg[0].bool(), masks[0, 0])
    assert out.fg.dtype == torch.float32


def test_score_is_the_mean_over_the_mask_and_the_threshold_is_strict():
    masks, valid = boxes(1, [[(0, 2, 0, 4), (4, 6, 0, 4)]])
    w_fg = torch.zeros(1, 8, 10)
    w_fg[0, 0, 0:4] = 1.0
    w_fg[0, 1, 0:4] = 0.5  # mean 0.75: equal to the threshold, so not kept
    w_fg[0, 4, 0:4] = 1.0
    w_fg[0, 5, 0:4] = 0.625  # mean 0.8125 > 0.75
    out = filter_motion_masks(masks, valid, w_fg, threshold=0.75)
    assert out.scores[0].tolist() == [0.75, 0.8125]
    assert out.valid.tolist() == [[False, True]]


def test_padding_and_empty_masks_are_never_kept():
    masks, valid = boxes(2, [[(0, 3, 0, 3)], []])
    masks[1, 0, 0:3, 0:3] = True  # pixels in a padding slot must be ignored
    valid_empty = valid.clone()
    valid_empty[1, 0] = True
    masks_empty = masks.clone()
    masks_empty[1, 0] = False  # a valid but empty mask
    w_fg = torch.ones(2, 8, 10)
    for m, v in ((masks, valid), (masks_empty, valid_empty)):
        out = filter_motion_masks(m, v, w_fg, threshold=0.9)
        assert out.valid.tolist() == [[True], [False]]
        assert out.scores[1, 0] == 0
        assert not out.fg[1].any()


def test_fg_is_the_union_of_kept_masks_per_frame():
    masks, valid = boxes(2, [[(0, 4, 0, 4), (2, 6, 2, 6)], [(0, 8, 0, 10)]])
    w_fg = torch.ones(2, 8, 10)
    out = filter_motion_masks(masks, valid, w_fg, threshold=0.9)
    assert out.valid.tolist() == [[True, True], [True, False]]
    assert torch.equal(out.fg[0].bool(), masks[0, 0] | masks[0, 1])
    assert out.fg[1].all()


def test_bad_inputs():
    masks, valid = boxes(1, [[(0, 3, 0, 3)]])
    with pytest.raises(ValueError):
        filter_motion_masks(masks, valid, torch.ones(1, 4, 5), threshold=0.9)
