"""paper 3.2, docs/training.md losses on hand-computed cases, and the batched matching against brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from stages.train import losses
from stages.train.burnin import BurninObjective, motion_terms
from stages.train.config import LossConfig

EPS = losses.EPS


def _maps(*rows: list[float]) -> torch.Tensor:
    """One frame of K maps over N pixels from rows of per-pixel attention."""
    return torch.tensor([rows], dtype=torch.float32)


def test_match_slots_assigns_each_mask_to_the_slot_that_covers_it():
    # 3 slots (2 foreground + background) over 4 pixels; mask A = pixels 0-1, mask B = pixel 3
    maps = _maps([0.05, 0.05, 0.1, 0.9], [0.9, 0.9, 0.1, 0.05], [0.05, 0.05, 0.8, 0.05])
    targets = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, 1]]], dtype=torch.bool)
    valid = torch.tensor([[True, True]])
    assert losses.match_slots(maps, targets, valid).tolist() == [[1, 0]]


def test_match_slots_never_uses_the_background_slot_and_marks_padding():
    # the background slot (last) fits mask A best, but only foreground slots may be matched
    maps = _maps([0.2, 0.2, 0.5, 0.5], [0.1, 0.1, 0.4, 0.4], [0.7, 0.7, 0.1, 0.1])
    targets = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, 0]]], dtype=torch.bool)
    valid = torch.tensor([[True, False]])
    assign = losses.match_slots(maps, targets, valid)
    assert assign[0, 1] == -1
    assert assign[0, 0] in (0, 1)


def test_match_slots_more_masks_than_slots_and_empty_frames():
    maps = torch.full((2, 3, 4), 1 / 3)  # 2 foreground slots
    targets = torch.zeros(2, 3, 4, dtype=torch.bool)
    targets[0, 0, 0] = targets[0, 1, 1] = targets[0, 2, 2] = True
    valid = torch.tensor([[True, True, True], [False, False, False]])
    assign = losses.match_slots(maps, targets, valid)
    assert sorted(a for a in assign[0].tolist() if a >= 0) == [0, 1]
    assert (assign[0] == -1).sum() == 1
    assert assign[1].tolist() == [-1, -1, -1]


def _nll(w: np.ndarray, m: np.ndarray) -> float:
    return -float(np.sum(m * np.log(np.maximum(w, EPS)) + (1 - m) * np.log(np.maximum(1 - w, EPS))))


def test_match_slots_minimises_the_summed_nll_like_brute_force():
    rng = np.random.default_rng(0)
    f, k, n, m = 5, 5, 30, 3
    logits = torch.from_numpy(rng.normal(size=(f, k, n)).astype(np.float32))
    maps = logits.softmax(1)
    targets = torch.from_numpy(rng.random((f, m, n)) < 0.3)
    valid = torch.ones(f, m, dtype=torch.bool)
    valid[2, 1] = False
    assign = losses.match_slots(maps, targets, valid)
    for frame in range(f):
        rows = [i for i in range(m) if valid[frame, i]]
        cost = {
            (i, s): _nll(maps[frame, s].numpy(), targets[frame, i].numpy().astype(float))
            for i in rows
            for s in range(k - 1)
        }
        best = min(
            sum(cost[i, s] for i, s in zip(rows, perm, strict=True))
            for perm in itertools.permutations(range(k - 1), len(rows))
        )
        got = sum(cost[i, int(assign[frame, i])] for i in rows)
        assert got == pytest.approx(best, rel=1e-5)


def test_matched_bce_hand_value_and_normalisation():
    # one frame, 2 foreground slots + bg, 2 pixels; mask [1, 0] matched to slot 0
    maps = _maps([0.8, 0.3], [0.1, 0.6], [0.1, 0.1])
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assign = torch.tensor([[0, 1]])
    w = torch.tensor([[1.5, 2.0]])
    got = losses.matched_bce(maps, targets, assign, w)
    first = -(1.5 * math.log(0.8) + math.log(1 - 0.3)) / 2
    second = -(math.log(1 - 0.1) + 2.0 * math.log(0.6)) / 2
    assert got.item() == pytest.approx((first + second) / 2, rel=1e-6)
    # an unmatched mask neither adds loss nor counts
    got = losses.matched_bce(maps, targets, torch.tensor([[0, -1]]), w)
    assert got.item() == pytest.approx(first, rel=1e-6)
    # no matched mask at all: 0
    assert losses.matched_bce(maps, targets, torch.tensor([[-1, -1]]), 1.0).item() == 0.0


def test_matched_bce_is_finite_at_saturated_maps_and_has_gradients():
    maps = _maps([1.0, 0.0], [0.0, 1.0], [0.0, 0.0]).requires_grad_()
    targets = torch.tensor([[[0.0, 1.0]]])
    loss = losses.matched_bce(maps, targets, torch.tensor([[0]]), 2.0)
    assert torch.isfinite(loss).all()
    assert loss.item() == pytest.approx(-(2 * math.log(EPS) + math.log(EPS)) / 2, rel=1e-6)
    loss.sum().backward()
    assert maps.grad is not None


def test_size_weight_is_two_minus_area_fraction():
    targets = torch.tensor([[[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]], dtype=torch.bool)
    assert losses.size_weight(targets).tolist() == [[1.5, 1.75, 2.0]]


def test_fg_bg_loss_whole_map_and_nonobject_region():
    w_fg = torch.tensor([[0.5, 0.25, 1.0, 0.0]])
    m_fg = torch.tensor([[1, 0, 1, 0]], dtype=torch.bool)
    attract = -(math.log(0.5) + math.log(1.0)) / 4
    got_all = losses.fg_bg_loss(w_fg, m_fg, 0.3, "all").item()
    assert got_all == pytest.approx(attract + 0.3 * (0.5 + 0.25 + 1.0 + 0.0) / 4, rel=1e-6)
    got_bmod = losses.fg_bg_loss(w_fg, m_fg, 0.3, "nonobject").item()
    assert got_bmod == pytest.approx(attract + 0.3 * (0.25 + 0.0) / 2, rel=1e-6)
    with pytest.raises(ValueError):
        losses.fg_bg_loss(w_fg, m_fg, 0.3, "inside")


def test_fg_bg_loss_per_frame_and_no_mask():
    w_fg = torch.tensor([[0.2, 0.2], [0.6, 0.6]])
    m_fg = torch.zeros(2, 2, dtype=torch.bool)
    got = losses.fg_bg_loss(w_fg, m_fg, 0.5)
    assert got.tolist() == pytest.approx([0.1, 0.3])


def test_reconstruction_loss_is_mse():
    a = torch.zeros(1, 2, 3, 4, 4)
    b = torch.full((1, 2, 3, 4, 4), 0.5)
    assert losses.reconstruction_loss(a, b).item() == pytest.approx(0.25)


def test_motion_terms_average_only_over_frames_with_masks():
    maps = torch.tensor([[[0.9, 0.1], [0.1, 0.9]], [[0.5, 0.5], [0.5, 0.5]]])  # K=2: 1 fg slot
    targets = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]]])
    valid = torch.tensor([[True], [False]])
    expected = -(1.5 * math.log(0.9) + math.log(0.9)) / 2  # weight 2 - 1/2
    assert motion_terms(maps, targets, valid, 1, "mean").item() == pytest.approx(expected, rel=1e-6)
    none = motion_terms(maps, targets, torch.zeros(2, 1, dtype=torch.bool), 1, "mean")
    assert none.item() == 0.0


def test_burnin_loss_is_the_sum_of_its_terms():
    from stages.model import DIOD, ModelConfig

    torch.manual_seed(0)
    model = DIOD(ModelConfig(num_slots=3, encoder_width=0.125, decoder_channels=8))
    frames = torch.rand(1, 2, 3, 16, 32)
    masks = torch.zeros(1, 2, 1, 4, 8, dtype=torch.bool)
    masks[0, :, 0, 1:3, 2:5] = True
    batch = {"frames": frames, "masks": masks, "valid": masks.flatten(3).any(-1)}
    total, terms = BurninObjective(LossConfig()).loss(model, batch, 0)
    assert total.item() == pytest.approx(terms["mse"] + terms["bce"] + terms["fg_bg"], rel=1e-5)
    total.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def _authors_clip_bce(maps: np.ndarray, masks: np.ndarray, clips: int) -> float:
    """Their burn-in slot BCE from the formula, one foreground slot (K = 2) so the matching is
    trivial: per frame, the mean over its masks of mean_pixels[-(2 - area) m log W - (1 - m)
    log(1 - W)]; frames without masks add 0; the sum over all frames divided by the clips."""
    total = 0.0
    for frame_maps, frame_masks in zip(maps, masks, strict=True):
        w = frame_maps[0]
        terms = [
            float(np.mean(-(2 - m.mean()) * m * np.log(w) - (1 - m) * np.log(1 - w)))
            for m in frame_masks
            if m.any()
        ]
        total += sum(terms) / len(terms) if terms else 0.0
    return total / clips


def test_the_authors_clip_sum_of_the_bce_against_the_formula():
    """2 clips of T = 2 frames, 4 pixels; one frame has no mask. ``sum`` gives their value,
    ``mean`` our mean over the 3 frames with masks."""
    rng = np.random.default_rng(0)
    fg = rng.uniform(0.05, 0.95, size=(4, 1, 4))
    maps = np.concatenate([fg, 1 - fg], axis=1)  # (F, K = 2, N)
    masks = np.zeros((4, 1, 4))
    masks[0, 0, :2] = masks[1, 0, 3] = masks[3, 0, 1:] = 1  # frame 2: no mask
    t_maps, t_masks = torch.tensor(maps, dtype=torch.float32), torch.tensor(masks, dtype=torch.bool)
    valid = t_masks.any(-1)
    paper = motion_terms(t_maps, t_masks, valid, clips=2, frames="sum").item()
    assert paper == pytest.approx(_authors_clip_bce(maps, masks, clips=2), rel=1e-5)
    ours = motion_terms(t_maps, t_masks, valid, clips=2, frames="mean").item()
    assert ours == pytest.approx(paper * 2 / 3, rel=1e-5)  # 4 frames / 2 clips vs 3 frames


def test_the_signed_reconstruction_is_the_mse_of_images_in_minus_one_one():
    a, b = torch.rand(1, 2, 3, 4, 4), torch.rand(1, 2, 3, 4, 4)
    signed = torch.mean(((2 * a - 1) - (2 * b - 1)) ** 2).item()
    assert losses.reconstruction_loss(a, b, "signed").item() == pytest.approx(signed, rel=1e-6)


def test_burnin_with_the_strong_view_reconstructs_the_augmented_frames():
    """Their burn-in: the model's input and the MSE target are the strong view of the clip,
    drawn from (seed, step, rank) so a resumed run draws the same."""
    from stages.distill.augment import step_generator, strong_view
    from stages.model import DIOD, ModelConfig

    torch.manual_seed(0)
    model = DIOD(ModelConfig(num_slots=3, encoder_width=0.125, decoder_channels=8)).eval()
    frames = torch.rand(2, 2, 3, 16, 32)
    masks = torch.zeros(2, 2, 1, 4, 8, dtype=torch.bool)
    batch = {"frames": frames, "masks": masks, "valid": masks.flatten(3).any(-1)}
    objective = BurninObjective(LossConfig(), strong=True, seed=3)
    _, terms = objective.loss(model, batch, 7)
    strong = strong_view(frames, step_generator(3, 7, 0))
    assert not torch.equal(strong, frames)
    with torch.no_grad():
        expected = losses.reconstruction_loss(model(strong).recon, strong).item()
    assert terms["mse"] == pytest.approx(expected, rel=1e-5)
