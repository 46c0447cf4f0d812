"""`diod predict` and model files end to end: an mp4 at 480x640 and a JPEG folder at
1080x1920 through a model file trained on synth, outputs at the original size and frame
count, a model file that predicts in another workspace exactly as its artifact, and bad
inputs as one line with nothing written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import zarr
from helpers import tiny_request

from stages import modelfile
from stages.datasets.imageio import read_label_map
from stages.frames import size_at_area


def _diod(*args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "diodcli.main", *args], capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def trained(tiny_masks, tmp_path_factory):
    """A tiny burn-in on synth, its model file, and footage made from its val frames."""
    from stages.train import train

    root, store, _masks = tiny_masks
    art = train(store, tiny_request(steps=2, val_split=""))
    base = tmp_path_factory.mktemp("footage")
    code, out = _diod(
        "--workspace", str(store.workspace), "export-model", "--model", art.id[:6],
        "--out", str(base / "synth.pt"),
    )  # fmt: skip
    assert code == 0, out
    frames = [cv2.imread(str(p)) for p in sorted((root / "val").glob("*/rgb/*.png"))][:5]
    video = cv2.VideoWriter(str(base / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 8, (640, 480))
    for frame in frames:
        video.write(cv2.resize(frame, (640, 480)))
    video.release()
    (base / "jpg").mkdir()
    for i, frame in enumerate(frames[:4]):
        cv2.imwrite(str(base / "jpg" / f"f{i:03d}.jpg"), cv2.resize(frame, (1920, 1080)))
    return store, art, base


def _check_output(folder, frames: int, size: tuple[int, int]) -> np.ndarray:
    pngs = sorted((folder / "ids").glob("*.png"))
    assert len(pngs) == frames
    ids = np.stack([read_label_map(p) for p in pngs])
    assert ids.shape == (frames, *size)
    assert np.array_equal(zarr.open_array(str(folder / "ids.zarr"), mode="r")[:], ids)
    records = [json.loads(line) for line in (folder / "objects.jsonl").read_text().splitlines()]
    for r in records:
        x0, y0, x1, y1 = r["box"]
        assert 0 <= x0 < x1 <= size[1] and 0 <= y0 < y1 <= size[0]
        assert r["area"] == int((ids[r["frame"]] == r["id"]).sum()) > 0
        assert r["moving"] is None and 0 <= r["score"] <= 1
    present = {(f, i) for f in range(frames) for i in np.unique(ids[f]) if i}
    assert present == {(r["frame"], r["id"]) for r in records}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["frames"] == frames and summary["frame_size"] == list(size)
    assert (folder / "overlay.mp4").stat().st_size > 0
    assert cv2.imread(str(folder / "contact_sheet.png")) is not None
    return ids


def test_predict_mp4_and_jpeg_folder_at_their_own_size(trained, tmp_path):
    store, _art, base = trained
    out = tmp_path / "out"
    code, text = _diod(
        "--workspace", str(store.workspace), "predict", str(base / "clip.mp4"),
        str(base / "jpg"), "--model", str(base / "synth.pt"), "--out", str(out),
        "--device", "cpu", "--precision", "fp32",
    )  # fmt: skip
    assert code == 0, text
    _check_output(out / "clip", 5, (480, 640))
    _check_output(out / "jpg", 4, (1080, 1920))
    assert sorted(p.name for p in out.iterdir()) == ["clip", "jpg"]  # no staging left


def test_model_file_in_another_workspace_predicts_as_its_artifact(trained, tmp_path):
    store, art, base = trained
    common = [str(base / "clip.mp4"), "--device", "cpu", "--precision", "fp32", "--no-overlay"]
    code, text = _diod(
        "--workspace", str(store.workspace), "predict", *common, "--model", art.id,
        "--out", str(tmp_path / "artifact"),
    )  # fmt: skip
    assert code == 0, text
    moved = tmp_path / "elsewhere" / "model.pt"
    moved.parent.mkdir()
    shutil.copy(base / "synth.pt", moved)
    code, text = _diod(
        "--workspace", str(tmp_path / "empty"), "predict", *common, "--model", str(moved),
        "--out", str(tmp_path / "file"),
    )  # fmt: skip
    assert code == 0, text
    a = zarr.open_array(str(tmp_path / "artifact/clip/ids.zarr"), mode="r")[:]
    b = zarr.open_array(str(tmp_path / "file/clip/ids.zarr"), mode="r")[:]
    assert np.array_equal(a, b)
    content = torch.load(moved, weights_only=True)  # plain tensors and containers only
    assert content["format"] == modelfile.FORMAT and content["lineage"]["artifact"] == art.id


def test_bad_inputs_are_one_line_and_write_nothing(trained, tmp_path):
    store, _art, base = trained
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((base / "synth.pt").read_bytes()[:5000])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    (tmp_path / "empty").mkdir()
    good_model = ["--model", str(base / "synth.pt")]
    cases = [
        ([str(base / "clip.mp4"), "--model", str(truncated)], "not a readable diod model file"),
        ([str(base / "clip.mp4"), "--model", str(foreign)], "not a diod model file"),
        ([str(garbage), *good_model], "garbage.mp4"),
        ([str(tmp_path / "empty"), *good_model], "no frames in this folder"),
        ([str(tmp_path / "nothing*.mp4"), *good_model], "matches nothing"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        code, text = _diod("--workspace", str(store.workspace), "predict", *args, "--out", str(out))
        lines = text.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, text)
        assert not out.exists() or not any(out.iterdir()), args


def test_size_at_area_keeps_the_aspect_ratio_at_the_training_area():
    assert size_at_area((480, 640), (96, 320), 0.0) == (152, 204)
    h, w = size_at_area((1080, 1920), (96, 320), 0.0)
    assert h % 4 == 0 and w % 4 == 0 and abs(w / h - 16 / 9) < 0.05
    assert abs(h * w - 96 * 320) / (96 * 320) < 0.05


def test_a_map_norm_model_predicts_at_its_training_size_only(trained, tmp_path):
    """The authors' [h*w, D] token norm fixes the map size: footage of any shape runs at the
    training input size, and another --size is a one-line error."""
    from stages.errors import UserError
    from stages.inference import PredictConfig, predict
    from stages.model import DIOD, ModelConfig

    store, _art, base = trained
    config = ModelConfig(num_slots=4, encoder_width=0.125, token_norm="map", map_size=(8, 16))
    loaded = modelfile.LoadedModel(
        model=DIOD(config),
        geometry=modelfile.InputGeometry(size=(32, 64), crop_top=0.0, clip_length=3),
        network="model",
        lineage={},
    )
    path = modelfile.save(loaded, tmp_path / "map.pt")
    run = PredictConfig(inputs=(str(base / "jpg"),), model=str(path), out=tmp_path / "out")
    (folder,) = predict(store, run)
    _check_output(folder, 4, (1080, 1920))
    with pytest.raises(UserError, match="runs at its training input size 32x64 only"):
        predict(store, PredictConfig(**{**run.__dict__, "size": (64, 128), "force": True}))
