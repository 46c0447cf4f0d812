"""Late fusion of an RGB and a LiDAR network's slot maps on the shared image grid (xMOD's
inference with both modalities, SPEC-xMOD.md section 4).

The rule: per frame, take each network's argmax segments S2_i (RGB) and S3_j (LiDAR). An
RGB object segment with at least one LiDAR object segment overlapping it at IoU > ``iou``
(0.1, the paper's) becomes the fused object F_i = S2_i united with all those partners; an
RGB segment with no partner is dropped: what only one modality sees is not trusted (the
consistency filter). Background slots take no part on either side (a background segment
overlaps everything by a tenth; the authors' code fuses it like an object), and pixels no
fused object covers are background.

Where fused objects overlap, a pixel goes to the one with the higher soft attention,
(RGB attention of slot i + the LiDAR network's attention to i's partners) / 2, which is
also what export's score averages inside each segment (``predict.argmax_scores``): the
fused maps are returned as soft maps of the same shape, so every consumer of a network's
maps (export, its zarr layout, eval) takes them unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: the IoU above which an RGB and a LiDAR segment are the same object (the paper's 0.1)
FUSION_IOU = 0.1


def fuse_maps(
    rgb: torch.Tensor, lidar: torch.Tensor, background: int, iou: float = FUSION_IOU
) -> torch.Tensor:
    """rgb, lidar: (n, K, h, w) soft maps of the same frames -> (n, K, h, w) fused maps whose
    argmax is the fused segmentation: slot i holds F_i's attention where F_i is, 0 elsewhere;
    the background slot 1 exactly where no fused object is."""
    if rgb.shape != lidar.shape:
        raise ValueError(f"maps of different shapes: rgb {rgb.shape}, lidar {lidar.shape}")
    k = rgb.shape[1]
    s2, s3 = (  # argmax segments, (n, K, N) one-hot
        F.one_hot(maps.argmax(1).flatten(1), k).transpose(1, 2).float() for maps in (rgb, lidar)
    )
    inter = s2 @ s3.transpose(1, 2)  # (n, K_rgb, K_lidar) pixels in both
    union = s2.sum(2, keepdim=True) + s3.sum(2).unsqueeze(1) - inter
    objects = torch.ones(k, dtype=torch.bool, device=rgb.device)
    objects[background] = False
    partners = (inter > iou * union) & objects.view(1, k, 1) & objects.view(1, 1, k)
    kept = partners.any(2)  # (n, K): RGB segments fused with at least one LiDAR segment
    linked = partners.float()
    covered = (s2 > 0) | (linked @ s3 > 0)  # F_i = S2_i united with its partners
    attention = (rgb.flatten(2) + linked @ lidar.flatten(2)) / 2
    fused = torch.where(covered & kept.unsqueeze(2), attention, torch.zeros_like(attention))
    fused[:, background] = (fused.amax(1) == 0).float()
    return fused.view_as(rgb)
