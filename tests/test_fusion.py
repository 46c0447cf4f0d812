"""Late fusion (stages/fusion.py): objects both networks see are kept and united, the rest
dropped; the IoU threshold, background slots and overlaps as the module says."""

from __future__ import annotations

import pytest
import torch

from stages.fusion import FUSION_IOU, fuse_maps
from stages.predict import argmax_scores

K, BACKGROUND = 5, 4


def soft(labels: torch.Tensor, confidence: float = 0.8) -> torch.Tensor:
    """(h, w) slot ids -> (1, K, h, w) soft maps whose argmax is ``labels``."""
    rest = (1 - confidence) / (K - 1)
    onehot = torch.nn.functional.one_hot(labels, K).permute(2, 0, 1).float()
    return (onehot * (confidence - rest) + rest).unsqueeze(0)


def canvas() -> torch.Tensor:
    return torch.full((10, 20), BACKGROUND)


def test_objects_both_see_are_united_and_the_others_dropped():
    rgb, lidar = canvas(), canvas()
    rgb[2:6, 2:6] = 0  # a car both see, shifted by a column: IoU 12/20
    lidar[2:6, 3:7] = 2
    rgb[7:9, 10:14] = 1  # seen in the frames only (e.g. a weak LiDAR return): dropped
    lidar[1:4, 15:19] = 3  # seen in the sweeps only: no RGB segment to keep it
    fused = fuse_maps(soft(rgb), soft(lidar), BACKGROUND).argmax(1)[0]
    expected = canvas()
    expected[2:6, 2:7] = 0
    torch.testing.assert_close(fused, expected)


def test_iou_must_exceed_a_tenth():
    rgb, lidar = canvas(), canvas()
    rgb[0:10, 0:10] = 0  # 100 pixels
    lidar[0:1, 0:10] = 1  # 10 pixels inside it: IoU exactly 0.1, not above
    assert fuse_maps(soft(rgb), soft(lidar), BACKGROUND).argmax(1).eq(BACKGROUND).all()
    lidar[1, 0] = 1  # 11 of 100: above
    fused = fuse_maps(soft(rgb), soft(lidar), BACKGROUND).argmax(1)[0]
    torch.testing.assert_close(fused, torch.where(rgb == 0, 0, BACKGROUND))
    assert FUSION_IOU == 0.1


def test_background_segments_take_no_part():
    rgb, lidar = canvas(), canvas()
    rgb[0:10, 0:3] = 0  # an RGB object that overlaps only the LiDAR background
    fused = fuse_maps(soft(rgb), soft(lidar), BACKGROUND)
    assert fused.argmax(1).eq(BACKGROUND).all()
    assert fused[:, BACKGROUND].eq(1).all()


def test_overlapping_fused_objects_split_by_attention():
    rgb, lidar = canvas(), canvas()
    rgb[2:6, 2:6], rgb[2:6, 8:12] = 0, 1  # two cars the LiDAR network merges into one
    lidar[2:6, 2:12] = 2
    rgb_maps = soft(rgb)
    rgb_maps[0, 0, :, 6:8] = 0.5  # the gap between them leans to car 0 in RGB
    fused = fuse_maps(rgb_maps, soft(lidar), BACKGROUND)
    ids, scores = argmax_scores(fused)
    expected = canvas()
    expected[2:6, 2:8], expected[2:6, 8:12] = 0, 1
    torch.testing.assert_close(ids[0], expected)
    # a score is the mean of both networks' attention inside the segment
    assert 0.5 < scores[0, 1] <= (0.8 + 0.8) / 2 + 1e-6


def test_maps_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="different shapes"):
        fuse_maps(torch.zeros(1, K, 4, 4), torch.zeros(1, K, 4, 5), BACKGROUND)
