"""The masks stage end to end: artifact format, reuse and resume, parallel workers, import
round trip, and the errors a user can run into (one line, exit code 2)."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from helpers import all_masks, run_cli, write_gt_flow_artifact

from stages import zarrstore
from stages.artifacts import ArtifactStore
from stages.datasets import open_dataset
from stages.datasets.imageio import read_label_map, write_png
from stages.errors import UserError
from stages.masks import stage as masks_stage
from stages.masks.importer import remap
from stages.masks.params import (
    GEOMETRIC_INSTANCE_DEFAULTS,
    SEGMENTER_INSTANCE_DEFAULTS,
    InstanceParams,
)
from stages.masks.stage import MasksConfig, compute_masks
from stages.masks.viz import render_masks
from stages.synthgen import SynthConfig, generate

TINY = SynthConfig(seed=0, train_videos=1, val_videos=2, frames=5, height=48, width=160)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "tiny", TINY, workers=1)


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "ws")


def test_masks_artifact_format_and_reuse(synth_root, store):
    flow = write_gt_flow_artifact(store, "synth", synth_root)
    art = compute_masks(store, MasksConfig(dataset="synth", workers=1))
    assert art.is_complete and art.upstream == {"flow": flow.id}
    assert art.params["method"] == "learned" and art.params["splits"] == ["train", "val"]
    assert art.params["segmenter"].startswith("sha256:")  # the builtin model, by content
    # a segmenter decides what is static: the geometric rule's ground-contact test is off;
    # its clean masks are split and kept by its own defaults
    assert art.params["instances"]["contact_min_diff"] == 0.0
    assert {k: art.params["instances"][k] for k in SEGMENTER_INSTANCE_DEFAULTS} == (
        SEGMENTER_INSTANCE_DEFAULTS
    )
    ds = open_dataset("synth", synth_root)
    for split in ("train", "val"):
        for video in ds.videos(split):
            group = zarrstore.open_video(art, "masks.zarr", split, video.name)
            masks = group["masks"]
            assert masks.shape == (TINY.frames, 48, 160) and masks.dtype == np.uint8
            assert masks.chunks == (1, 48, 160)
            attrs = dict(group.attrs)
            assert attrs["frame_names"] == list(video.frames) and attrs["split"] == split
            assert (attrs["height"], attrs["width"]) == (48, 160)
            assert attrs["source_height"] == 48 and attrs["instances"]["min_area"] == 50
            for frame in masks[:]:
                ids = set(np.unique(frame).tolist()) - {0}
                assert ids == set(range(1, len(ids) + 1))
    summary = art.manifest["summary"]
    assert summary["videos"] == 3 and summary["frames"] == 15
    for split in ("train", "val"):
        moving = summary["quality"][split]["moving"]
        assert set(moving) == {"precision", "recall", "f1", "tp", "masks", "gt"}
        assert moving["masks"] <= summary["masks"] and moving["gt"] > 0
    again = compute_masks(store, MasksConfig(dataset="synth", workers=1))
    assert again.id == art.id and again.manifest["finished"] == art.manifest["finished"]
    other = compute_masks(store, MasksConfig(dataset="synth", workers=1, splits=("val",)))
    assert other.id != art.id and other.manifest["summary"]["videos"] == 2


def _torch_threads(_: int) -> int:
    return torch.get_num_threads()


def test_a_worker_runs_torch_on_one_thread():
    """One worker per core: a worker's torch (the segmenter's network) must not start a
    thread per core as well (2 workers x 2 threads ran the stage 2-3x slower on 2 cores)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        2, mp_context=context, initializer=masks_stage._worker_init, initargs=(os.getpid(),)
    ) as pool:
        assert set(pool.map(_torch_threads, range(2))) == {1}


def test_parallel_workers_give_the_same_masks(synth_root, tmp_path):
    results = []
    for workers in (1, 2):
        store = ArtifactStore(tmp_path / f"ws{workers}")
        write_gt_flow_artifact(store, "synth", synth_root, backward=True)
        config = MasksConfig(dataset="synth", workers=workers, run_length=2)
        results.append(compute_masks(store, config))
    a, b = (all_masks(r) for r in results)
    assert a.keys() == b.keys() and len(a) == 3
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert results[0].id == results[1].id  # same inputs, same id: workers change nothing


def test_failure_leaves_published_videos_and_rerun_resumes(synth_root, store, monkeypatch):
    write_gt_flow_artifact(store, "synth", synth_root)
    real_publish = masks_stage._publish
    published = []

    def publish_then_die(writer, plan, *args):
        if published:
            raise RuntimeError("killed")
        real_publish(writer, plan, *args)
        published.append(plan.key)

    monkeypatch.setattr(masks_stage, "_publish", publish_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        compute_masks(store, MasksConfig(dataset="synth", workers=1))
    (failed,) = store.list("synth", "masks")
    assert failed.status == "failed" and list(failed.manifest["progress"]) == published
    monkeypatch.setattr(masks_stage, "_publish", real_publish)
    computed = []
    real_run_job = masks_stage.run_job

    def counting_run_job(job):
        computed.append(f"{job.split}/{job.video}")
        return real_run_job(job)

    monkeypatch.setattr(masks_stage, "run_job", counting_run_job)
    art = compute_masks(store, MasksConfig(dataset="synth", workers=1))
    assert art.id == failed.id and art.is_complete and art.manifest["resumed"]
    assert published[0] not in computed and len(set(computed)) == 2
    assert art.manifest["summary"]["videos"] == 3 and len(art.manifest["progress"]) == 3


def test_flow_of_another_dataset_is_a_clear_error(synth_root, tmp_path, store, capsys):
    write_gt_flow_artifact(store, "synth", synth_root)
    other = generate(
        tmp_path / "other",
        SynthConfig(seed=1, train_videos=0, val_videos=1, frames=3, height=48, width=160),
        workers=1,
    )
    with pytest.raises(UserError, match="has 3 frames, the flow 5 .*pass a flow artifact"):
        compute_masks(store, MasksConfig(dataset="synth", root=str(other), splits=("val",)))
    resized = generate(tmp_path / "resized", replace(TINY, height=64), workers=1)
    with pytest.raises(UserError, match="has 64x160 frames, the flow 48x160"):
        compute_masks(store, MasksConfig(dataset="synth", root=str(resized)))
    with pytest.raises(UserError, match="--flow is for masks computed from flow"):
        compute_masks(store, MasksConfig(dataset="synth", flow="abc", dataset_masks=True))
    code, _, err = run_cli(
        [
            "--workspace",
            str(store.workspace),
            "masks",
            "--dataset",
            "folder",
            "--root",
            str(synth_root),
        ],
        capsys,
    )
    assert code == 2 and "no complete flow artifact for dataset 'folder'" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli(
        ["--workspace", str(store.workspace), "masks", "--dataset", "synth", "--flow", "ffff00"],
        capsys,
    )
    assert code == 2 and "no flow artifact 'ffff00'" in err
    with pytest.raises(UserError, match="no split 'test'"):
        compute_masks(store, MasksConfig(dataset="synth", splits=("test",)))
    assert not store.list("synth", "masks")  # nothing was started for bad inputs


def test_options_a_segmenter_would_ignore_are_errors(synth_root, store, capsys):
    """The segmenter is the default: the geometric rule's options, and --segmenter with
    imported masks, would silently do nothing, so each is one error line naming the way out;
    with --segmenter none the geometric rule decides, with those options."""
    flow = write_gt_flow_artifact(store, "synth", synth_root)
    base = ["--workspace", str(store.workspace), "masks", "--dataset", "synth"]
    code, _, err = run_cli([*base, "--min-residual", "0.7"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--min-residual: a setting of the geometric rule" in err and "--segmenter none" in err
    code, _, err = run_cli([*base, "--contact-min-diff", "0.3"], capsys)
    assert code == 2 and "--contact-min-diff: a setting of the geometric rule" in err
    code, _, err = run_cli(
        [*base, "--root", str(synth_root), "--dataset-masks", "--segmenter", "builtin"], capsys
    )
    assert code == 2 and "--segmenter is for masks computed from flow" in err
    assert not store.list("synth", "masks")
    code, _, err = run_cli(
        [*base, "--segmenter", "none", "--camera-model", "parallax", "--workers", "0"], capsys
    )
    assert code == 0, err
    art = store.latest("synth", "masks")
    assert art.params["method"] == "geometric" and art.upstream == {"flow": flow.id}
    assert art.params["motion"]["camera_model"] == "parallax" and "segmenter" not in art.params
    assert art.params["instances"]["contact_min_diff"] == InstanceParams().contact_min_diff > 0
    assert {k: art.params["instances"][k] for k in GEOMETRIC_INSTANCE_DEFAULTS} == (
        GEOMETRIC_INSTANCE_DEFAULTS
    )
    code, _, err = run_cli([*base, "--persist-frac", "0.3", "--workers", "0"], capsys)
    assert code == 0, err  # a segmenter's default, overridden
    art = store.latest("synth", "masks")
    assert art.params["method"] == "learned" and art.params["instances"]["persist_frac"] == 0.3
    assert art.params["instances"]["split_ratio"] == SEGMENTER_INSTANCE_DEFAULTS["split_ratio"]


def _id_pngs(
    root: Path, split: str, video: str, frames: int, h: int, w: int, seed: int
) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    maps = []
    for i in range(frames):
        ids = np.zeros((h, w), np.uint16)
        ids[2:14, 3:20] = 1000 + i  # large raw ids
        ids[16:30, 25:40] = 7
        ids[30:32, 0:3] = 9  # 6 px: under min-area
        ids[rng.integers(0, h), rng.integers(0, w)] = 65535  # a stray pixel
        maps.append(ids)
        path = root / split / video / f"{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(path, ids)
    return maps


@pytest.fixture
def folder_dataset(tmp_path) -> Path:
    root = tmp_path / "folder"
    rng = np.random.default_rng(0)
    for split, video in (("train", "a"), ("train", "b"), ("val", "c")):
        for i in range(3):
            path = root / split / video / "rgb" / f"{i:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_png(path, rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    return root


def test_import_round_trip(folder_dataset, tmp_path, store, capsys):
    masks_dir = tmp_path / "ids"
    inputs = {
        (split, video): _id_pngs(masks_dir, split, video, 3, 32, 48, seed)
        for seed, (split, video) in enumerate((("train", "a"), ("train", "b"), ("val", "c")))
    }
    code, out, err = run_cli(
        [
            "--workspace", str(store.workspace), "masks", "--dataset", "folder",
            "--root", str(folder_dataset), "--import", str(masks_dir), "--min-area", "10",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    art = store.latest("folder", "masks")
    assert art.upstream == {} and art.params["method"] == "import"
    assert art.params["splits"] == ["train", "val"] and art.params["min_area"] == 10
    exported = tmp_path / "exported"
    render_masks(art, open_dataset("folder", folder_dataset), exported, mode="ids")
    for (split, video), maps in inputs.items():
        for i, raw in enumerate(maps):
            back = read_label_map(exported / split / video / f"{i:06d}.png")
            expected = remap(raw.astype(np.int64), 10, 32)
            np.testing.assert_array_equal(back, expected)
            assert set(np.unique(back).tolist()) == {0, 1, 2}  # 7 -> 1, 1000+i -> 2
    # exporting and importing the export again changes nothing: the remapping is idempotent
    code, _, err = run_cli(
        [
            "--workspace", str(store.workspace), "masks", "--dataset", "folder",
            "--root", str(folder_dataset), "--import", str(exported), "--min-area", "10",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    second = store.latest("folder", "masks")
    assert second.id != art.id
    first_masks, second_masks = all_masks(art), all_masks(second)
    for key in first_masks:
        np.testing.assert_array_equal(first_masks[key], second_masks[key])


def test_remap_rules():
    raw = np.array([[0, 5, 5, 300], [300, 300, 2, 0]])
    np.testing.assert_array_equal(remap(raw, 1, 10), [[0, 2, 2, 3], [3, 3, 1, 0]])
    np.testing.assert_array_equal(remap(raw, 2, 10), [[0, 1, 1, 2], [2, 2, 0, 0]])
    np.testing.assert_array_equal(remap(raw, 1, 1), [[0, 0, 0, 1], [1, 1, 0, 0]])  # largest


def test_dataset_masks_are_imported(folder_dataset, store):
    for video_dir in sorted((folder_dataset / "train").iterdir()):
        for i in range(3):
            ids = np.zeros((32, 48), np.uint8)
            ids[5:25, 10:30] = 3
            (video_dir / "motion").mkdir(exist_ok=True)
            write_png(video_dir / "motion" / f"{i:06d}.png", ids)
    config = MasksConfig(dataset="folder", root=str(folder_dataset), dataset_masks=True)
    art = compute_masks(store, config)
    assert art.params["method"] == "dataset" and art.params["splits"] == ["train"]
    for masks in all_masks(art).values():
        assert masks.shape == (3, 32, 48) and set(np.unique(masks).tolist()) == {0, 1}
    with pytest.raises(UserError, match="no precomputed motion masks"):
        compute_masks(
            store,
            MasksConfig(
                dataset="folder", root=str(folder_dataset), dataset_masks=True, splits=("val",)
            ),
        )


@pytest.mark.parametrize("problem", ["wrong size", "float", "missing", "truncated"])
def test_bad_imported_masks_are_one_line_errors(problem, folder_dataset, tmp_path, store, capsys):
    from PIL import Image

    masks_dir = tmp_path / "ids"
    for split, video in (("train", "a"), ("train", "b"), ("val", "c")):
        _id_pngs(masks_dir, split, video, 3, 32, 48, 0)
    bad = masks_dir / "train" / "b" / "000001.png"
    if problem == "wrong size":
        write_png(bad, np.ones((16, 48), np.uint16))
        expected = "mask size 16x48 differs from its frame 32x48"
    elif problem == "float":
        bad.unlink()
        Image.fromarray(np.ones((32, 48), np.float32)).save(bad, format="TIFF")
        expected = "expected an integer label PNG"
    elif problem == "missing":
        bad.unlink()
        expected = "missing mask PNG for frame '000001'"
    else:
        bad.write_bytes(bad.read_bytes()[:40])
        expected = "unreadable or truncated"
    code, _, err = run_cli(
        [
            "--workspace", str(store.workspace), "masks", "--dataset", "folder",
            "--root", str(folder_dataset), "--import", str(masks_dir), "--workers", "1",
        ],
        capsys,
    )  # fmt: skip
    assert code == 2 and expected in err and str(bad) in err
    assert len(err.strip().splitlines()) == 1
    for art in store.list("folder", "masks"):  # nothing half-published
        assert not art.is_complete
        for split in ("train", "val"):
            for video in zarrstore.video_names(art, "masks.zarr", split):
                zarr.open_group(art.path / "masks.zarr" / split / video, mode="r")["masks"][:]


def test_import_option_errors(folder_dataset, tmp_path, store):
    with pytest.raises(UserError, match="--root is required"):
        compute_masks(store, MasksConfig(dataset="folder", import_dir=str(tmp_path)))
    with pytest.raises(UserError, match="give one source"):
        compute_masks(
            store,
            MasksConfig(
                dataset="folder",
                root=str(folder_dataset),
                import_dir=str(tmp_path),
                dataset_masks=True,
            ),
        )
    with pytest.raises(UserError, match="no split folder"):
        compute_masks(
            store, MasksConfig(dataset="folder", root=str(folder_dataset), import_dir=str(tmp_path))
        )
    (tmp_path / "train").mkdir()
    with pytest.raises(UserError, match="no folder .* for video 'a'"):
        compute_masks(
            store, MasksConfig(dataset="folder", root=str(folder_dataset), import_dir=str(tmp_path))
        )


def test_cli_report_and_viz(synth_root, store, tmp_path, capsys):
    write_gt_flow_artifact(store, "synth", synth_root)
    ws = ["--workspace", str(store.workspace)]
    code, out, err = run_cli(
        [*ws, "masks", "--dataset", "synth", "--report", "--workers", "1"], capsys
    )
    assert code == 0, err
    assert "mask quality, split val (IoU > 0.5):" in out
    assert "vs moving GT: precision" in out and "vs all    GT: precision" in out
    art = store.latest("synth", "masks")
    code, out, err = run_cli(
        [*ws, "viz", "masks", "--dataset", "synth", "--out", str(tmp_path / "png")], capsys
    )
    assert code == 0, err
    frames = sorted((tmp_path / "png" / "val" / "val-0000").glob("*.png"))
    assert [f.stem for f in frames] == list(
        open_dataset("synth", synth_root).video("val", "val-0000").frames
    )
    code, _, err = run_cli(
        [
            *ws,
            "viz",
            "masks",
            "--dataset",
            "synth",
            "--format",
            "mp4",
            "--split",
            "val",
            "--out",
            str(tmp_path / "mp4"),
        ],
        capsys,
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "mp4" / "val").iterdir()) == [
        "val-0000.mp4",
        "val-0001.mp4",
    ]
    code, _, err = run_cli([*ws, "viz", "masks", "--dataset", "synth", "--video", "nope"], capsys)
    assert code == 2 and "--video nope" in err
    config = tmp_path / "masks.toml"
    config.write_text(
        '[masks]\nsegmenter = "none"\nmin_area = 80\ncontact_min_diff = 0.0\nworkers = 1\n'
    )
    code, out, err = run_cli([*ws, "masks", "--config", str(config), "--dataset", "synth"], capsys)
    assert code == 0, err
    configured = store.latest("synth", "masks")
    assert configured.id != art.id and configured.id in out
    assert configured.params["instances"]["min_area"] == 80
    assert configured.params["instances"]["contact_min_diff"] == 0.0


def test_implausible_masks_are_flagged_naming_the_option():
    masks = np.zeros((10, 20, 30), np.uint8)
    assert "almost no masks (0.00 per frame)" in masks_stage.implausible(masks)
    assert "--noise-k" in masks_stage.implausible(masks)
    assert "--segmenter" in masks_stage.implausible(masks, masks_stage.LEARNED)
    masks[:, :10, :20] = 1  # a third of every frame
    assert "--camera-model" in masks_stage.implausible(masks)
    assert "--segmenter" in masks_stage.implausible(masks, masks_stage.LEARNED)
    masks[:, :10, :20] = 0
    masks[:, 2:6, 2:6] = 1
    assert masks_stage.implausible(masks) is None


def test_videos_without_movers_are_recorded_in_the_summary(synth_root, store):
    write_gt_flow_artifact(store, "synth", synth_root)
    art = compute_masks(
        store,
        MasksConfig(
            dataset="synth",
            workers=0,
            segmenter=masks_stage.NO_SEGMENTER,
            motion=replace(masks_stage.MotionParams(), min_residual=1e6),
        ),
    )
    warnings = art.manifest["summary"]["warnings"]
    assert set(warnings) == {"train/train-0000", "val/val-0000", "val/val-0001"}
    assert all("almost no masks" in text for text in warnings.values())
