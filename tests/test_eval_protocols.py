"""`diod eval --protocol paper|diod` end to end on tiny synth, TRI-PD and KITTI layouts with
fake export artifacts: what each protocol scores, and the checks on the predictions."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import export_artifact
from helpers import run_cli as run
from sklearn.metrics import adjusted_rand_score

from stages import protocols
from stages.artifacts import Artifact, ArtifactStore
from stages.datasets.imageio import write_png
from stages.errors import UserError
from stages.evaluate import EvalConfig, evaluate, read_scores
from stages.groundtruth import TRIPD_CROP_ROWS

K = 4  # slots; background slot K - 1
#: what `diod export --protocol paper` records (a burn-in: one network)
PAPER_PARAMS = {"which": "model", "batchnorm": "train", "batch_size": 1, "precision": "fp32"}
#: what a default export records
DIOD_PARAMS = {"which": "teacher", "batchnorm": "eval", "batch_size": None, "precision": "bf16"}


def _export(
    store: ArtifactStore,
    dataset: str,
    root: Path,
    slots: dict[str, np.ndarray],
    params: dict,
    attrs: dict | None = None,
    scores: bool = True,
) -> Artifact:
    return export_artifact(store, dataset, root, slots, params, K, attrs=attrs, scores=scores)


# -- synth: the generic paper protocol and its skip rule --------------------------------------
def _synth_gt(t: int) -> np.ndarray:
    """Frame 0: one object, id 2; frame 1: objects 1 and 2; frame 2: one object, id 1."""
    gt = np.zeros((8, 12), np.uint16)
    if t in (0, 1):
        gt[:4, :6] = 2
    if t in (1, 2):
        gt[4:, 6:] = 1
    return gt


@pytest.fixture
def synth(tmp_path):
    root = tmp_path / "synth"
    d = root / "val" / "c"
    (d / "rgb").mkdir(parents=True)
    (d / "instances").mkdir()
    for t in range(3):
        write_png(d / "rgb" / f"{t:06d}.png", np.zeros((8, 12, 3), np.uint8))
        write_png(d / "instances" / f"{t:06d}.png", _synth_gt(t))
    (d / "meta.json").write_text(json.dumps({"moving_ids": [1]}))
    store = ArtifactStore(tmp_path / "ws")
    gt = np.stack([_synth_gt(t) for t in range(3)]).astype(np.int64)
    slots = np.where(gt > 0, gt - 1, K - 1)  # exact
    _export(store, "synth", root, {"c": slots}, DIOD_PARAMS)
    return store


def test_paper_counts_the_id_2_frame_where_diod_skips_it(synth, caplog):
    diod = read_scores(evaluate(synth, EvalConfig(dataset="synth")))
    assert diod["protocol"] == "diod" and diod["export_deviations"] == []
    assert (diod["fg_ari"], diod["n_samples"], diod["n_skipped"]) == (1.0, 1, 2)
    with caplog.at_level("WARNING"):
        art = evaluate(synth, EvalConfig(dataset="synth", protocol="paper"))
    paper = read_scores(art)
    # frame 0 (one object, id 2): fg-ARI 0, counted; frame 1: 1; frame 2 (largest id 1): skipped
    assert paper["protocol"] == "paper" and art.params["protocol"] == "paper"
    assert paper["fg_ari"] == pytest.approx(0.5) and paper["all_ari"] == pytest.approx(1.0)
    assert (paper["n_samples"], paper["n_skipped"]) == (2, 1)
    assert paper["f1_50"] == diod["f1_50"] == 1.0  # same GT here: F1 is the same matching
    assert art.id != evaluate(synth, EvalConfig(dataset="synth")).id
    assert paper["export_deviations"] == [
        "--which teacher (paper: student)",
        "--batchnorm eval (paper: train)",
        "--batch-size None (paper: 1)",
        "--precision bf16 (paper: fp32)",
    ]
    assert "diod export --protocol paper" in caplog.text
    with open(art.path / "per_frame.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["fg_ari"]) == 0.0 and float(rows[0]["all_ari"]) == pytest.approx(1.0)
    assert rows[2]["fg_ari"] == rows[2]["all_ari"] == ""  # frame 2 skipped


def test_cli_protocol_option(synth, capsys):
    ws = ["--workspace", str(synth.workspace)]
    code, out, _ = run([*ws, "eval", "--help"], capsys)
    assert code == 0 and "--protocol [diod|paper]" in out
    code, _, err = run([*ws, "eval", "--dataset", "synth", "--protocol", "bogus"], capsys)
    assert code == 2 and "--protocol" in err and len(err.strip().splitlines()) == 1
    code, out, err = run([*ws, "eval", "--dataset", "synth", "--protocol", "paper"], capsys)
    assert code == 0 and "protocol paper" in out and "largest GT id" in out
    assert "--which teacher (paper: student)" in err
    code, out, _ = run([*ws, "eval", "--dataset", "synth", "--protocol", "paper", "--json"], capsys)
    assert json.loads(out)["protocol"] == "paper"
    code, _, err = run(
        [*ws, "eval", "--dataset", "synth", "--protocol", "paper", "--granularity", "clip"], capsys
    )
    assert code == 0  # the generic form takes the options' samples


def test_paper_needs_a_model_s_predictions(synth, tmp_path):
    with synth.open("synth", "masks", {"root": str(tmp_path / "synth")}) as w:
        w.complete()
    with pytest.raises(UserError, match="--masks: the paper protocol scores a model"):
        evaluate(synth, EvalConfig(dataset="synth", protocol="paper", masks="latest"))
    slots = np.full((3, 8, 12), K - 1)
    _export(synth, "synth", tmp_path / "synth", {"c": slots}, PAPER_PARAMS, scores=False)
    with pytest.raises(UserError, match="no 'scores' or 'soft' array"):
        evaluate(synth, EvalConfig(dataset="synth", protocol="paper"))
    with pytest.raises(UserError, match="--protocol x: expected one of diod, paper"):
        evaluate(synth, EvalConfig(dataset="synth", protocol="x"))


# -- TRI-PD: the crop, the relabelling, 5-frame clips -----------------------------------------
MAP = (10, 16)  # maps of the model's input region (40 x 64 half-size rows after the crop)
TOP = 32  # map rows standing for the cropped top


def _tripd_gt(t: int) -> np.ndarray:
    """Source frames 336 x 128: object 22 (600 px at half size) always; object 33 400 px
    at half size in frames 0-6, 600 px from frame 7; object 11 only in the cropped top."""
    gt = np.zeros((2 * (TRIPD_CROP_ROWS + 40), 128), np.uint16)
    top = 2 * TRIPD_CROP_ROWS
    gt[:top] = 11
    gt[top : top + 40, :60] = 22
    gt[top + 40 : top + 80, 60 : 100 if t < 7 else 120] = 33
    return gt


@pytest.fixture
def tripd(tmp_path):
    root = tmp_path / "tripd"
    scene = root / "test" / "scene_000001"
    for kind in ("rgb", "ari_masks"):
        (scene / kind / "camera_01").mkdir(parents=True)
    for t in range(10):
        write_png(scene / "rgb" / "camera_01" / f"{t:06d}.png", np.zeros((336, 128, 3), np.uint8))
        write_png(scene / "ari_masks" / "camera_01" / f"{t:06d}.png", _tripd_gt(t))
    # the model finds both objects in every frame (33 also while it is small)
    region = np.full((10, *MAP), K - 1)
    region[:, :5, :8] = 0  # object 22
    region[:7, 5:, 8:13] = 1  # object 33, 20 x 20 at half size: columns 30..49 -> j 8..12
    region[7:, 5:, 8:15] = 1  # object 33, 20 x 30: columns 30..59 -> j 8..14
    slots = np.concatenate([np.full((10, TOP, MAP[1]), K - 1), region], axis=1)
    store = ArtifactStore(tmp_path / "ws")
    return store, root, slots, region


def test_tripd_paper_scores_the_crop_with_relabelled_gt_on_clips_of_5(tripd):
    store, root, slots, region = tripd
    params = {**PAPER_PARAMS, "clip_length": 5}
    _export(store, "tripd", root, {"scene_000001__camera_01": slots}, params, {"cropped_rows": TOP})
    scores = read_scores(evaluate(store, EvalConfig(dataset="tripd", protocol="paper")))
    assert scores["export_deviations"] == []
    assert (scores["granularity"], scores["clip_len"]) == ("clip", 5)
    # clip 0 (frames 0-4): labels {0, 1} only (33 is still background): skipped
    assert (scores["n_samples"], scores["n_skipped"]) == (1, 1)
    # clip 1: 33 is label 2 in frames 7-9 only; fg exact, all-ARI sees 33 as bg in 5-6
    gt = np.zeros((5, *MAP), np.int64)
    gt[:, :5, :8] = 1
    gt[2:, 5:, 8:15] = 2
    pred = region[5:]
    assert scores["fg_ari"] == pytest.approx(1.0)
    assert scores["all_ari"] == pytest.approx(adjusted_rand_score(gt.ravel(), pred.ravel()))
    # F1: GT 22 in 10 frames + 33 in frames 7-9; slot 1 in frames 0-6 is a false positive
    assert (scores["n_gt"], scores["n_pred"], scores["tp_50"]) == (13, 20, 13)
    assert scores["n_frames"] == 10 and scores["miou"] == pytest.approx(1.0)


def test_tripd_paper_scores_the_authors_cameras_and_first_frames(tripd, monkeypatch):
    """Their loader reads cameras 01 and 05-09 of each scene, and 200 frames of each (8
    here, so that the cap shows on a 10-frame video)."""
    store, root, slots, _ = tripd
    scene = root / "test" / "scene_000001"
    for kind in ("rgb", "ari_masks"):
        shutil.copytree(scene / kind / "camera_01", scene / kind / "camera_02")
    videos = {f"scene_000001__camera_0{c}": slots for c in (1, 2)}
    params = {**PAPER_PARAMS, "clip_length": 5}
    _export(store, "tripd", root, videos, params, {"cropped_rows": TOP})
    monkeypatch.setitem(protocols.PAPER, "tripd", replace(protocols.PAPER["tripd"], frames=8))
    scores = read_scores(evaluate(store, EvalConfig(dataset="tripd", protocol="paper")))
    assert scores["videos_outside_protocol"] == ["scene_000001__camera_02"]
    assert (scores["n_videos"], scores["n_frames"]) == (1, 8)
    # clips: frames 0-4 (labels 0, 1: skipped) and 5-7 (33 is label 2 in frame 7)
    assert (scores["n_samples"], scores["n_skipped"], scores["n_gt"]) == (1, 1, 9)


def test_tripd_paper_fixes_the_samples_and_needs_the_crop_rows(tripd, capsys):
    store, root, slots, _ = tripd
    params = {**PAPER_PARAMS, "clip_length": 5}
    _export(store, "tripd", root, {"scene_000001__camera_01": slots}, params)
    with pytest.raises(UserError, match="--granularity frame: the paper protocol for tripd"):
        evaluate(store, EvalConfig(dataset="tripd", protocol="paper", granularity="frame"))
    with pytest.raises(UserError, match="--clip-len 4: the paper protocol"):
        evaluate(store, EvalConfig(dataset="tripd", protocol="paper", clip_len=4))
    with pytest.raises(UserError, match="no 'cropped_rows' attribute"):
        evaluate(store, EvalConfig(dataset="tripd", protocol="paper"))
    code, _, err = run(
        ["--workspace", str(store.workspace), "eval", "--dataset", "tripd", "--protocol", "paper"],
        capsys,
    )
    assert code == 2 and "cropped_rows" in err and len(err.strip().splitlines()) == 1
    # the diod protocol scores the whole frame, 11 (the cropped top) included
    diod = read_scores(evaluate(store, EvalConfig(dataset="tripd")))
    assert diod["protocol"] == "diod" and diod["n_gt"] == 30  # 11, 22, 33 in every frame


# -- KITTI: raw values, stuff included ---------------------------------------------------------
def test_kitti_paper_counts_stuff_as_objects(tmp_path):
    root = tmp_path / "kitti"
    for kind in ("rgb", "instance"):
        (root / "val" / kind).mkdir(parents=True)
    raw = np.zeros((16, 32), np.uint16)
    raw[:8] = 23 * 256  # sky
    raw[8:, :16] = 7 * 256  # road
    raw[10:14, 20:28] = 26 * 256 + 1  # a car
    write_png(root / "val" / "rgb" / "000000_10.png", np.zeros((16, 32, 3), np.uint8))
    write_png(root / "val" / "instance" / "000000_10.png", raw)
    slots = np.full((1, 8, 16), K - 1)
    slots[0, 4:, :8] = 1  # road
    slots[0, 5:7, 10:14] = 0  # the car
    store = ArtifactStore(tmp_path / "ws")
    params = {**PAPER_PARAMS, "clip_length": 1, "batch_size": 8}
    _export(store, "kitti", root, {"000000_10": slots}, params)
    paper = read_scores(evaluate(store, EvalConfig(dataset="kitti", protocol="paper")))
    assert paper["export_deviations"] == [] and paper["granularity"] == "frame"
    # GT segments: sky, road, car; the sky is the background slot's, so it is missed
    assert (paper["n_gt"], paper["n_pred"], paper["tp_50"]) == (3, 2, 2)
    assert paper["fg_ari"] == pytest.approx(1.0) and paper["n_samples"] == 1
    diod = read_scores(evaluate(store, EvalConfig(dataset="kitti")))
    # ours: the car alone is an object (the road segment is a false positive), ARI skipped
    assert (diod["n_gt"], diod["n_pred"], diod["tp_50"]) == (1, 2, 1)
    assert diod["fg_ari"] is None and diod["n_skipped"] == 1


def test_movi_paper_adds_the_video_level_scores(synth, monkeypatch, capsys):
    """The MOVi entry (its adapter is not here yet) applied to the synth fixture."""
    assert protocols.protocol("paper", "movi").video_scores
    assert not protocols.protocol("diod", "movi").video_scores
    monkeypatch.setitem(protocols.PAPER, "synth", protocols.PAPER["movi"])
    scores = read_scores(evaluate(synth, EvalConfig(dataset="synth", protocol="paper")))
    # one video, predicted exactly: every object found over the whole video
    assert scores["video_fg_ari"] == pytest.approx(1.0) and scores["mbo"] == pytest.approx(1.0)
    assert "mbo" not in read_scores(evaluate(synth, EvalConfig(dataset="synth")))
    code, out, _ = run(
        ["--workspace", str(synth.workspace), "eval", "--dataset", "synth", "--protocol", "paper"],
        capsys,
    )
    assert code == 0 and "video fg-ARI" in out and "mBO" in out
