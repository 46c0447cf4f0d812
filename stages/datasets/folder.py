"""The generic layout, which ``diod data synth`` also writes.

<root>/<split>/<video>/rgb/*.png|jpg        frames, sorted by name
<root>/<split>/<video>/instances/*.png      optional GT ids, uint16, 0 = background
<root>/<split>/<video>/motion/*.png         optional precomputed motion masks
<root>/<split>/*.mp4|avi|mov|mkv            videos as files (decoded with OpenCV)
"""

from __future__ import annotations

from pathlib import Path

from stages.datasets.base import Dataset, Video, labels_for_frames
from stages.datasets.imageio import VIDEO_SUFFIXES, VideoFile, list_images
from stages.errors import UserError


class FolderDataset(Dataset):
    name = "folder"

    def splits(self) -> list[str]:
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and self._list_videos(p.name)
        )

    def _list_videos(self, split: str) -> list[Video]:
        split_dir = self.root / split
        if not split_dir.is_dir():
            return []
        videos = []
        for entry in sorted(split_dir.iterdir()):
            if entry.is_dir() and (entry / "rgb").is_dir():
                videos.append(self._frame_folder(split, entry))
            elif entry.is_dir() and any(entry.iterdir()) and not entry.name.startswith("."):
                raise UserError(f"{entry}: video folder without an rgb/ directory of frames")
            elif entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
                n = VideoFile(entry).frame_count()
                videos.append(
                    Video(
                        name=entry.stem,
                        split=split,
                        frames=tuple(f"{i:06d}" for i in range(n)),
                        video_file=entry,
                        extra={"dir": entry},
                    )
                )
        return videos

    def _frame_folder(self, split: str, video_dir: Path) -> Video:
        rgb = list_images(video_dir / "rgb")
        return Video(
            name=video_dir.name,
            split=split,
            frames=tuple(p.stem for p in rgb),
            rgb=tuple(rgb),
            instances=labels_for_frames(video_dir / "instances", rgb, "instances"),
            motion=labels_for_frames(video_dir / "motion", rgb, "motion"),
            extra={"dir": video_dir},
        )

    def iter_frames(self, video: Video):
        if video.video_file is not None:
            yield from VideoFile(video.video_file).frames()
        else:
            yield from super().iter_frames(video)
