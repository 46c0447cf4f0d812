"""Dataset adapters on tiny fixtures of each layout, and their bad-input errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stages.datasets import open_dataset
from stages.datasets.imageio import read_gray, read_rgb, write_png
from stages.datasets.kitti import decode_kitti_instances
from stages.errors import UserError

RNG = np.random.default_rng(0)


def _frames(n: int, h: int = 12, w: int = 16) -> list[np.ndarray]:
    return [RNG.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _write_video_dir(d: Path, n: int = 3, h: int = 12, w: int = 16, gt: bool = True) -> list:
    (d / "rgb").mkdir(parents=True)
    frames = _frames(n, h, w)
    for i, f in enumerate(frames):
        write_png(d / "rgb" / f"{i:06d}.png", f)
        if gt:
            (d / "instances").mkdir(exist_ok=True)
            ids = np.zeros((h, w), np.uint16)
            ids[2:6, 3:9] = 1
            ids[7:10, 10:15] = 300
            write_png(d / "instances" / f"{i:06d}.png", ids)
    return frames


@pytest.fixture
def folder_root(tmp_path):
    root = tmp_path / "folder"
    frames = _write_video_dir(root / "train" / "clipA", n=3)
    _write_video_dir(root / "val" / "clipB", n=2, gt=False)
    writer = cv2.VideoWriter(
        str(root / "val" / "movie.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (16, 12)
    )
    for f in _frames(4):
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return root, frames


def test_folder_layout(folder_root):
    root, frames = folder_root
    ds = open_dataset("folder", root)
    assert ds.splits() == ["train", "val"]
    (video,) = ds.videos("train")
    assert video.name == "clipA" and video.frames == ("000000", "000001", "000002")
    np.testing.assert_array_equal(ds.frame(video, 1), frames[1])
    assert [f.shape for f in ds.iter_frames(video)] == [(12, 16, 3)] * 3
    inst = ds.instances(video, 0)
    assert inst.dtype == np.int64 and set(np.unique(inst)) == {0, 1, 300}
    assert ds.motion(video, 0) is None and ds.moving_ids(video) is None
    names = [v.name for v in ds.videos("val")]
    assert names == ["clipB", "movie"]
    movie = ds.video("val", "movie")
    decoded = list(ds.iter_frames(movie))
    assert len(movie) == 4 and len(decoded) == 4 and decoded[0].shape == (12, 16, 3)
    summary = ds.check("val")
    assert summary["videos"] == 2 and summary["frames"] == 6 and summary["resolutions"] == ["12x16"]


def test_kitti_layout(tmp_path):
    drive = tmp_path / "train" / "2011_09_26" / "2011_09_26_drive_0001_sync"
    for cam in ("image_02", "image_03"):
        (drive / cam / "data").mkdir(parents=True)
        for i, f in enumerate(_frames(3)):
            write_png(drive / cam / "data" / f"{i:010d}.png", f)
    (tmp_path / "val" / "rgb").mkdir(parents=True)
    (tmp_path / "val" / "instance").mkdir()
    raw = np.zeros((12, 16), np.uint16)
    raw[:, :4] = 7 * 256  # "stuff" of class 7: background
    raw[2:5, 5:8] = 26 * 256 + 1  # car 1
    raw[6:9, 5:8] = 26 * 256 + 2  # car 2
    raw[6:9, 10:14] = 24 * 256 + 1  # person 1
    for name in ("000000_10", "000001_10"):
        write_png(tmp_path / "val" / "rgb" / f"{name}.png", _frames(1)[0])
        write_png(tmp_path / "val" / "instance" / f"{name}.png", raw)
    ds = open_dataset("kitti", tmp_path)
    assert ds.splits() == ["train", "val"]
    train = ds.videos("train")
    assert [v.name for v in train] == [
        "2011_09_26__2011_09_26_drive_0001_sync__image_02",
        "2011_09_26__2011_09_26_drive_0001_sync__image_03",
    ]
    assert len(train[0]) == 3 and ds.instances(train[0], 0) is None
    val = ds.videos("val")
    assert [len(v) for v in val] == [1, 1]
    ids = ds.instances(val[0], 0)
    assert set(np.unique(ids)) == {0, 1, 2, 3}
    assert (ids[:, :4] == 0).all() and len(np.unique(ids[2:5, 5:8])) == 1


def test_decode_kitti_instances_without_background():
    raw = np.full((2, 2), 26 * 256 + 3, np.uint16)
    assert (decode_kitti_instances(raw) == 1).all()


def _tripd_scene(root: Path, split: str, layers: dict[str, list[np.ndarray]]) -> None:
    """One TRI-PD scene seen by one camera: folder (rgb, ari_masks, ...) -> its frames."""
    for sub, images in layers.items():
        folder = root / split / "scene_000001" / sub / "camera_01"
        folder.mkdir(parents=True)
        for i, image in enumerate(images):
            write_png(folder / f"{i:018d}.png", image)


def test_tripd_layout(tmp_path):
    colour = np.zeros((12, 16, 3), np.uint8)
    colour[1:4, 1:4] = (255, 0, 0)
    colour[5:8, 5:8] = (0, 0, 9)
    empty = np.zeros((12, 16), np.uint8)
    _tripd_scene(
        tmp_path, "test", {"rgb": _frames(2), "ari_masks": [colour] * 2, "est_masks": [empty] * 2}
    )
    ds = open_dataset("tripd", tmp_path)
    (video,) = ds.videos("val")  # val reads test
    assert video.name == "scene_000001__camera_01" and len(video) == 2
    assert set(np.unique(ds.instances(video, 0))) == {0, 255 << 16, 9}
    assert ds.motion(video, 1).max() == 0
    assert ds.moving_ids(video) is None  # no moving_masks/: the dataset does not say


def test_tripd_moving_ids_are_the_instances_on_moving_masks(tmp_path):
    colour = np.zeros((12, 16, 3), np.uint8)
    colour[1:4, 1:4] = (255, 0, 0)  # moves in frame 1 only
    colour[5:8, 5:8] = (0, 0, 9)  # touched by the moving mask, never mostly on it
    colour[9:12, 9:12] = (0, 7, 0)  # static
    movers = [np.zeros((12, 16, 3), np.uint8) for _ in range(2)]  # colour-coded: > 0 matters
    for mover in movers:
        mover[5, 5:8] = (200, 200, 200)
    movers[1][1:4, 1:4] = (10, 20, 30)
    _tripd_scene(
        tmp_path, "train", {"rgb": _frames(2), "ari_masks": [colour] * 2, "moving_masks": movers}
    )
    ds = open_dataset("tripd", tmp_path)
    (video,) = ds.videos("train")
    assert ds.moving_ids(video) == {255 << 16}
    wrong = tmp_path / "train/scene_000001/moving_masks/camera_01/000000000000000001.png"
    write_png(wrong, np.zeros((6, 8), np.uint8))
    with pytest.raises(UserError, match=f"{wrong}: moving mask of size"):
        ds.moving_ids(video)


def test_errors_name_the_file(folder_root, tmp_path):
    root, _ = folder_root
    with pytest.raises(UserError, match="unknown dataset"):
        open_dataset("nope", root)
    with pytest.raises(UserError, match="not a directory"):
        open_dataset("folder", tmp_path / "missing")
    with pytest.raises(UserError, match="no videos in split 'test'"):
        open_dataset("folder", root).videos("test")
    frame = root / "train" / "clipA" / "rgb" / "000001.png"
    frame.write_bytes(frame.read_bytes()[:60])  # truncated
    with pytest.raises(UserError, match=f"{frame}: unreadable or truncated"):
        open_dataset("folder", root).check("train")


def test_size_mismatch_and_empty_and_missing_label(tmp_path):
    root = tmp_path / "d"
    _write_video_dir(root / "train" / "v", n=2)
    write_png(root / "train" / "v" / "rgb" / "000002.png", _frames(1, 10, 16)[0])
    write_png(root / "train" / "v" / "instances" / "000002.png", np.zeros((10, 16), np.uint16))
    with pytest.raises(UserError, match="000002.png: frame size 10x16 differs"):
        open_dataset("folder", root).check("train")
    (root / "train" / "v" / "instances" / "000002.png").unlink()
    with pytest.raises(UserError, match="missing instances map"):
        open_dataset("folder", root).videos("train")
    empty = tmp_path / "e"
    (empty / "train" / "v" / "rgb").mkdir(parents=True)
    with pytest.raises(UserError, match="empty video"):
        open_dataset("folder", empty).check("train")


def test_float_label_map_rejected(tmp_path):
    from PIL import Image

    from stages.datasets.imageio import read_label_map

    path = tmp_path / "f.tiff"
    Image.fromarray(np.zeros((4, 4), np.float32)).save(path)
    with pytest.raises(UserError, match="integer label"):
        read_label_map(path)


def test_gray_frames_match_the_colour_frames_and_name_a_bad_file(tmp_path):
    """``read_gray`` (OpenCV's decoder, for the masks' texture test) gives exactly the gray
    of ``read_rgb``; a file it cannot read is ``read_rgb``'s error line."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "f.png"
    write_png(path, rgb)
    gray = read_gray(path)
    expected = cv2.cvtColor(read_rgb(path), cv2.COLOR_RGB2GRAY)
    assert gray.shape == (20, 30) and gray.dtype == np.uint8
    assert np.array_equal(gray, expected)
    path.write_bytes(path.read_bytes()[:60])  # truncated
    with pytest.raises(UserError, match=f"{path}: unreadable or truncated"):
        read_gray(path)
    with pytest.raises(UserError, match="file not found"):
        read_gray(tmp_path / "missing.png")
