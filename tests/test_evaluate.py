"""The eval stage and `diod eval` end to end on a tiny synth-layout dataset with fake artifacts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli as run

from stages.artifacts import ArtifactStore
from stages.datasets.imageio import write_png
from stages.evaluate import EvalConfig, evaluate, segment_mean
from stages.metrics import resize_nearest
from stages.zarrstore import frame_array, write_video

K = 6  # slots; background slot K - 1
SRC, SIZE = (24, 32), (12, 16)


def _gt_a(t: int) -> np.ndarray:
    """Video A: object 1 (moving) in every frame, object 300 (static) in frames 0-2."""
    gt = np.zeros(SRC, np.uint16)
    gt[2:8, 4:12] = 1
    if t < 3:
        gt[12:20, 16:28] = 300
    return gt


def _gt_b(t: int) -> np.ndarray:
    """Video B: a large static object 2 and a small moving object 7, touching."""
    gt = np.zeros(SRC, np.uint16)
    gt[4:16, 4:20] = 2
    gt[4:8, 20:24] = 7
    return gt


VIDEOS = {"a": (_gt_a, 4, [1]), "b": (_gt_b, 3, [7])}


def _write_dataset(root: Path) -> None:
    rng = np.random.default_rng(0)
    for name, (gt_fn, frames, moving) in VIDEOS.items():
        d = root / "val" / name
        (d / "rgb").mkdir(parents=True)
        (d / "instances").mkdir()
        for t in range(frames):
            write_png(d / "rgb" / f"{t:06d}.png", rng.integers(0, 256, (*SRC, 3), dtype=np.uint8))
            write_png(d / "instances" / f"{t:06d}.png", gt_fn(t))
        (d / "meta.json").write_text(json.dumps({"moving_ids": moving}))


def _predicted_slots(name: str, t: int) -> np.ndarray:
    """Video A exactly right; video B merges objects 2 and 7 into one slot."""
    gt = resize_nearest(VIDEOS[name][0](t).astype(np.int64), SIZE)
    slots = np.full(SIZE, K - 1, np.uint8)
    if name == "a":
        slots[gt == 1], slots[gt == 300] = 0, 1
    else:
        slots[gt > 0] = 3
    return slots


def _export(store: ArtifactStore, root: Path | None, *, bad_frame=None, with_scores=True):
    """A flow artifact recording the root, and an export artifact below it."""
    with store.open("synth", "flow", {"root": str(root) if root else None}) as w:
        flow = w.complete()
    with store.open(
        "synth", "export", {"fake": with_scores, "bad": bad_frame}, {"flow": flow}
    ) as w:
        for name, (_, frames, _) in VIDEOS.items():
            names = [bad_frame if t == 2 and bad_frame else f"{t:06d}" for t in range(frames)]
            attrs = dict(num_slots=K, background_slot=K - 1, height=SIZE[0], width=SIZE[1])
            with write_video(
                w, "predictions.zarr", "val", name, dict(attrs, frame_names=names)
            ) as g:
                frame_array(g, "slots", (frames, *SIZE), np.uint8)[:] = np.stack(
                    [_predicted_slots(name, t) for t in range(frames)]
                )
                if with_scores:
                    frame_array(g, "scores", (frames, K), np.float32)[:] = np.ones((frames, K))
                else:  # soft maps only: eval derives the scores from them
                    slots = np.asarray(g["slots"][:])
                    soft = (np.arange(K)[None, :, None, None] == slots[:, None]) * 0.8 + 0.04
                    frame_array(g, "soft", soft.shape, np.float16)[:] = soft
        return w.complete()


@pytest.fixture
def setup(tmp_path):
    root = tmp_path / "synth"
    _write_dataset(root)
    store = ArtifactStore(tmp_path / "ws")
    return root, store, _export(store, root)


EXPECTED = {
    # A: 7 objects over 4 frames, all found; B: 6 objects, 3 found (object 2: IoU 48/52, 7: 4/52)
    "n_gt": 13,
    "n_pred": 10,
    "tp_50": 10,
    "precision": 1.0,
    "recall": 10 / 13,
    "f1_50": 20 / 23,
    # frames A0-A2 fg-ARI 1, A3 skipped (one object), B0-B2 one cluster on two objects: 0
    "fg_ari": 0.5,
    "n_samples": 6,
    "n_skipped": 1,
}


def test_stage_scores_a_predictions_artifact(setup):
    root, store, export = setup
    art = evaluate(store, EvalConfig(dataset="synth"))
    assert art.stage == "eval" and art.upstream == {"export": export.id} and art.is_complete
    assert art.params["root"] == str(root.resolve())
    scores = json.loads((art.path / "scores.json").read_text())
    for key, value in EXPECTED.items():
        assert scores[key] == pytest.approx(value), key
    moving = scores["by_motion"]["moving"]
    assert moving["recall"] == 4 / 7 and moving["n_gt"] == 7
    assert moving["miou"] == pytest.approx((4 + 3 * 4 / 52) / 7)
    assert sum(size["n_gt"] for size in moving["by_size"].values()) == 7
    assert (
        scores["by_motion"]["static"]["recall"] == 1.0
        and scores["by_motion"]["static"]["n_gt"] == 6
    )
    assert scores["source"] == {"stage": "export", "id": export.id} and scores["split"] == "val"
    with open(art.path / "per_frame.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["video"], r["frame"]) for r in rows][:2] == [("a", "000000"), ("a", "000001")]
    assert len(rows) == 7 and rows[3]["fg_ari"] == "" and rows[4]["tp_50"] == "1"
    assert art.manifest["summary"]["f1_50"] == pytest.approx(20 / 23)

    again = evaluate(store, EvalConfig(dataset="synth"))  # same inputs: the same artifact, reused
    assert again.id == art.id and again.manifest["finished"] == art.manifest["finished"]
    forced = evaluate(store, EvalConfig(dataset="synth", force=True))
    assert forced.id == art.id and forced.manifest["finished"] != art.manifest["finished"]


def test_clip_granularity_writes_per_clip(setup):
    _, store, _ = setup
    art = evaluate(store, EvalConfig(dataset="synth", granularity="clip", clip_len=2))
    scores = json.loads((art.path / "scores.json").read_text())
    # clips: A[0:2] A[2:4] (object 300 in frame 2) B[0:2] B[2:3]; fg-ARI 1, 1, 0, 0
    assert scores["granularity"] == "clip" and scores["n_samples"] == 4 and scores["fg_ari"] == 0.5
    assert scores["f1_50"] == pytest.approx(20 / 23)
    assert len((art.path / "per_clip.csv").read_text().splitlines()) == 1 + 4


def test_cli_json_and_table(setup, capsys):
    _, store, _ = setup
    ws = str(store.workspace)
    code, out, _ = run(["--workspace", ws, "eval", "--dataset", "synth", "--json"], capsys)
    assert code == 0
    scores = json.loads(out)
    assert scores["f1_50"] == pytest.approx(20 / 23) and scores["fg_ari"] == 0.5
    (art,) = store.list("synth", "eval")
    assert scores == json.loads((art.path / "scores.json").read_text())
    code, out, _ = run(["--workspace", ws, "eval", "--dataset", "synth"], capsys)
    assert code == 0 and "fg-ARI" in out and "50.0" in out and "static objects recall@50" in out


def test_lidar_pixels_score_only_where_the_sweep_has_points(setup, capsys, monkeypatch):
    _, store, _ = setup
    ws = str(store.workspace)
    code, _, err = run(
        ["--workspace", ws, "eval", "--dataset", "synth", "--pixels", "lidar"], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--pixels lidar: video a of" in err and "has no LiDAR sweeps" in err
    assert not any(a.is_complete for a in store.list("synth", "eval"))

    def left_half(self, video, index, grid, box=None):  # a sweep seeing map columns 0-7 only
        points = np.zeros((*grid, 4), np.float32)
        points[:, : grid[1] // 2, 3] = 10.0
        return points

    monkeypatch.setattr("stages.datasets.synth.SynthDataset.lidar", left_half)
    art = evaluate(store, EvalConfig(dataset="synth", pixels="lidar"))
    scores = json.loads((art.path / "scores.json").read_text())
    # A: object 1 (map columns 2-5) seen in 4 frames, object 300 (columns 8-13) never; B:
    # object 2 (columns 2-9) seen in part and found there, object 7 (columns 10-11) never
    assert scores["n_gt"] == 7 and scores["n_pred"] == 7 and scores["f1_50"] == 1.0
    assert art.params["pixels"] == "lidar"
    dense = evaluate(store, EvalConfig(dataset="synth"))
    assert dense.id != art.id and dense.params["pixels"] == "all"

    def everywhere(self, video, index, grid, box=None):  # a point in every cell
        points = np.zeros((*grid, 4), np.float32)
        points[..., 3] = 10.0
        return points

    monkeypatch.setattr("stages.datasets.synth.SynthDataset.lidar", everywhere)
    full = evaluate(store, EvalConfig(dataset="synth", pixels="lidar", force=True))
    same, reference = (json.loads((a.path / "scores.json").read_text()) for a in (full, dense))
    assert {k: v for k, v in same.items() if k != "source"} == {
        k: v for k, v in reference.items() if k != "source"
    }  # at LiDAR pixels = dense when the LiDAR covers the map


def test_masks_scored_as_predictions(setup, capsys):
    root, store, _ = setup
    with store.open("synth", "masks", {"root": str(root), "method": "import"}) as w:
        for name, (gt_fn, frames, _) in VIDEOS.items():
            masks = np.stack([gt_fn(t) for t in range(frames)]).astype(np.int64)
            masks = np.unique(masks, return_inverse=True)[1].reshape(masks.shape).astype(np.uint8)
            attrs = dict(
                height=SRC[0], width=SRC[1], frame_names=[f"{t:06d}" for t in range(frames)]
            )
            with write_video(w, "masks.zarr", "val", name, attrs) as g:
                frame_array(g, "masks", masks.shape, np.uint8)[:] = masks
        masks_art = w.complete()
    ws = str(store.workspace)
    code, out, _ = run(
        ["--workspace", ws, "eval", "--dataset", "synth", "--masks", "latest", "--json"], capsys
    )
    scores = json.loads(out)
    assert code == 0 and scores["source"] == {"stage": "masks", "id": masks_art.id}
    assert (
        scores["f1_50"] == 1.0
        and scores["fg_ari"] == 1.0
        and scores["n_pred"] == scores["n_gt"] == 13
    )


def test_scores_from_soft_maps():
    rng = np.random.default_rng(5)
    soft = rng.random((3, 4, 5, 6)).astype(np.float32)
    labels = soft.argmax(1)
    expected = np.zeros((3, 4))
    for t in range(3):
        for k in range(4):
            if (labels[t] == k).any():
                expected[t, k] = soft[t, k][labels[t] == k].mean()
    np.testing.assert_allclose(segment_mean(soft, labels), expected, rtol=1e-6)


def test_user_errors_exit_2(tmp_path, setup, capsys):
    root, store, _ = setup
    empty = str(tmp_path / "empty-ws")
    code, _, err = run(["--workspace", empty, "eval", "--dataset", "synth"], capsys)
    assert code == 2 and "no complete export artifact" in err and len(err.strip().splitlines()) == 1
    ws = str(store.workspace)
    code, _, err = run(
        ["--workspace", ws, "eval", "--dataset", "synth", "--predictions", "ffff"], capsys
    )
    assert code == 2 and "no export artifact 'ffff'" in err
    args = [
        "--workspace",
        ws,
        "eval",
        "--dataset",
        "synth",
        "--predictions",
        "latest",
        "--masks",
        "x",
    ]
    code, _, err = run(args, capsys)
    assert code == 2 and "exclusive" in err
    code, _, err = run(
        ["--workspace", ws, "eval", "--dataset", "synth", "--split", "train"], capsys
    )
    assert code == 2 and "--split train" in err


def test_frame_names_must_exist_and_failures_publish_nothing(tmp_path, capsys):
    root = tmp_path / "synth"
    _write_dataset(root)
    store = ArtifactStore(tmp_path / "ws")
    bad = _export(store, root, bad_frame="nope")
    code, _, err = run(["--workspace", str(store.workspace), "eval", "--dataset", "synth"], capsys)
    assert code == 2 and "nope" in err and "predictions.zarr/val/" in err
    (failed,) = store.list("synth", "eval")
    assert failed.upstream == {"export": bad.id} and not failed.is_complete
    assert not (failed.path / "scores.json").exists()


def test_root_comes_from_lineage_or_option(tmp_path, capsys):
    root = tmp_path / "synth"
    _write_dataset(root)
    store = ArtifactStore(tmp_path / "ws")
    _export(store, None, with_scores=False)
    ws = str(store.workspace)
    code, _, err = run(["--workspace", ws, "eval", "--dataset", "synth"], capsys)
    assert code == 2 and "--root" in err and "record a dataset root" in err
    code, out, _ = run(
        ["--workspace", ws, "eval", "--dataset", "synth", "--root", str(root), "--json"], capsys
    )
    assert code == 0 and json.loads(out)["f1_50"] == pytest.approx(20 / 23)  # scores from soft
