"""TRI-PD (ParallelDomain) as distributed by Bao et al.

    <root>/<split>/scene_XXXXXX/rgb/camera_0N/*.png
    <root>/<split>/scene_XXXXXX/est_masks/camera_0N/*.png     estimated motion masks
    <root>/<split>/scene_XXXXXX/ari_masks/camera_0N/*.png     GT instances (evaluation)
    <root>/<split>/scene_XXXXXX/moving_masks/camera_0N/*.png  GT moving objects

Splits are ``train`` and ``test``; ``val`` reads ``test`` (the 51 evaluation videos) when
no separate val folder exists. Each (scene, camera) is one video. Colour-coded masks are
folded to one id per colour (see ``read_label_map``).
"""

from __future__ import annotations

from stages.datasets.base import Dataset, Video, labels_for_frames, safe_name
from stages.datasets.imageio import list_images


class TripdDataset(Dataset):
    name = "tripd"
    split_names = ("train", "val", "test")

    def _list_videos(self, split: str) -> list[Video]:
        split_dir = self.root / split
        if split == "val" and not split_dir.is_dir():
            split_dir = self.root / "test"
        if not split_dir.is_dir():
            return []
        videos = []
        for cam_dir in sorted(split_dir.glob("scene_*/rgb/camera_*")):
            scene = cam_dir.parent.parent
            rgb = list_images(cam_dir)
            videos.append(
                Video(
                    name=safe_name(scene.name, cam_dir.name),
                    split=split,
                    frames=tuple(p.stem for p in rgb),
                    rgb=tuple(rgb),
                    instances=labels_for_frames(
                        scene / "ari_masks" / cam_dir.name, rgb, "ari_masks"
                    ),
                    motion=labels_for_frames(scene / "est_masks" / cam_dir.name, rgb, "est_masks"),
                    extra={"dir": cam_dir, "moving_masks": scene / "moving_masks" / cam_dir.name},
                )
            )
        return videos
