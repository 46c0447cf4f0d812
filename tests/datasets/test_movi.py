"""`diod data movi`: MOVi-E TFRecord shards (written here in MOVi-E's feature schema) to the
`movi` layout and back through the adapter, bit-exactly; bad shards give one-line errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli as run
from movi_shards import (
    encode_example,
    fake_video,
    movi_features,
    quantise,
    tfrecord,
    write_shards,
)

from stages.datasets import open_dataset
from stages.datasets.imageio import read_label_map, read_rgb
from stages.errors import UserError
from stages.movi import MoviConfig, convert_movi
from stages.movi.example import decode_varints, parse_example
from stages.movi.tfrecord import count_records, iter_records

VIDEOS = {"train": [["11", "4"], ["27"]], "validation": [["90"]]}  # per shard, video names


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """(src folder, {split: {name: FakeVideo}}): two train shards, one validation shard."""
    src = tmp_path_factory.mktemp("tfds")
    content: dict[str, dict] = {}
    seed = 0
    for split, shards in VIDEOS.items():
        records = []
        for names in shards:
            records.append([])
            for name in names:
                seed += 1
                video = content.setdefault(split, {})[name] = fake_video(name, seed)
                records[-1].append(encode_example(movi_features(video)))
        write_shards(src, split, records)
    return src, content


@pytest.fixture(scope="module")
def converted(source, tmp_path_factory):
    src, _ = source
    out = tmp_path_factory.mktemp("movi") / "out"
    convert_movi(MoviConfig(src=src, out=out, resolution="128x128", depth=True))
    return out


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


# -- the wire format ------------------------------------------------------------------------
def test_example_decoder_agrees_with_the_protobuf_runtime():
    ints = [0, 1, 127, 128, 300, 65535, 2**40, -1, -(2**63), 2**63 - 1]
    floats = np.array([0.0, -1.5, 3.25e-7, 1e30], np.float32)
    data = encode_example(
        {
            "a/ints": ("int64_list", ints),
            "a/floats": ("float_list", floats.tolist()),
            "bytes": ("bytes_list", [b"", b"x" * 300, "é".encode()]),
            "empty": ("int64_list", []),
        }
    )
    features = parse_example(data)
    assert features["a/ints"].int64_values().tolist() == ints
    assert features["a/floats"].float_values().tobytes() == floats.tobytes()
    assert features["bytes"].bytes_values() == [b"", b"x" * 300, "é".encode()]
    assert features["empty"].int64_values().size == 0


def test_packed_varints_decode_vectorised():
    values = np.random.default_rng(0).integers(0, 2**20, 5000)
    data = encode_example({"v": ("int64_list", values.tolist())})
    assert np.array_equal(parse_example(data)["v"].int64_values(), values)
    assert decode_varints(memoryview(bytes([0x96, 0x01, 0x05]))).tolist() == [150, 5]


def test_tfrecord_container_round_trip(tmp_path):
    path = tmp_path / "x.tfrecord"
    path.write_bytes(tfrecord([b"one", b"", b"three" * 1000]))
    assert list(iter_records(path)) == [b"one", b"", b"three" * 1000]
    assert count_records(path) == 3


# -- conversion and the adapter ---------------------------------------------------------------
def test_conversion_reads_back_bit_exactly(source, converted):
    _, content = source
    ds = open_dataset("movi", converted)
    assert ds.splits() == ["train", "validation"]
    for split, videos in content.items():
        listed = ds.videos(split)
        assert sorted(v.name for v in listed) == sorted(videos)
        for video in listed:
            fake = videos[video.name]
            t = len(fake.rgb)
            assert video.frames == tuple(f"{i:06d}" for i in range(t))
            for i in range(t):
                assert np.array_equal(ds.frame(video, i), fake.rgb[i])
                assert np.array_equal(ds.instances(video, i), fake.segmentations[i])
            for key, ours in (("forward", ds.gt_flow(video)), ("backward", None)):
                codes, (lo, hi) = fake.codes[key]
                step = (hi - lo) / 65535
                exact = getattr(fake, key)  # (T, H, W, 2), (delta_row, delta_col)
                if ours is None:  # backward pair t: frame t+1 back to t = -backward[t+1]
                    ours, exact = ds.gt_backward_flow(video), -exact[1:]
                else:
                    exact = exact[:-1]
                assert ours.shape == (t - 1, 2, 128, 128) and ours.dtype == np.float32
                expected = np.moveaxis(exact[..., ::-1], -1, 1)  # (dx, dy)
                assert np.abs(ours - expected).max() <= step / 2 + 1e-5 * max(abs(lo), abs(hi))
                sign = -1 if key == "backward" else 1
                pairs = codes[1:] if key == "backward" else codes[:-1]
                formula = sign * (pairs.astype(np.float64) / 65535 * (hi - lo) + lo)
                assert np.array_equal(
                    ours, np.moveaxis(formula[..., ::-1], -1, 1).astype(np.float32)
                )
            depth_codes, (lo, hi) = fake.codes["depth"]
            assert np.abs(ds.depth(video) - fake.depth).max() <= (hi - lo) / 65535
            assert ds.moving_ids(video) == {2}
            meta = ds.meta(video)
            assert meta["video_name"] == video.name
            assert [i["is_dynamic"] for i in meta["instances"]] == [False, True, False]


def test_val_reads_validation_and_check_passes(converted):
    ds = open_dataset("movi", converted)
    assert [v.name for v in ds.videos("val")] == ["90"]
    summary = ds.check("train")
    assert summary["videos"] == 3 and summary["frames"] == 9
    assert summary["resolutions"] == ["128x128"] and summary["gt_instances"] == 3


def test_cli_converts_deterministically_and_a_rerun_is_a_no_op(source, converted, tmp_path, capsys):
    src, _ = source
    out = tmp_path / "cli"
    args = ["data", "movi", "--src", str(src), "--out", str(out), "--resolution", "128x128"]
    code, stdout, err = run([*args, "--depth"], capsys)
    assert code == 0, err
    assert "train 3 videos" in stdout and "validation 1 videos" in stdout
    before = tree_digest(out)
    assert before == tree_digest(converted)  # the same bytes as the library's run
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    code, _, err = run([*args, "--depth"], capsys)
    assert code == 0, err
    assert tree_digest(out) == before
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items() if p.name != "movi.json")


def test_limit_then_resume_after_a_killed_run(source, converted, tmp_path):
    src, _ = source
    out = tmp_path / "out"
    config = MoviConfig(src=src, out=out, resolution="128x128", splits=("train",), limit=1)
    record = convert_movi(config)
    assert record["splits"]["train"] == {"shards": 2, "videos": 1, "complete": False}
    assert [p.name for p in (out / "train").iterdir() if not p.name.startswith(".")] == ["11"]
    partial = out / "train" / ".4.partial-x" / "4"  # what a kill mid-video leaves
    (partial / "rgb").mkdir(parents=True)
    record = convert_movi(
        MoviConfig(src=src, out=out, resolution="128x128", depth=False, splits=("train",))
    )
    assert record["splits"]["train"]["complete"] and not partial.parent.exists()
    assert sorted(p.name for p in (out / "train").iterdir()) == ["11", "27", "4"]
    for name in ("11", "4"):
        assert read_rgb(out / "train" / name / "rgb" / "000002.png").shape == (128, 128, 3)
        assert read_label_map(out / "train" / name / "instances" / "000000.png").max() == 3


def test_flow_as_gray_alpha_pngs_decodes_like_int64(tmp_path):
    video = fake_video("5", seed=99)
    write_shards(
        tmp_path / "src", "test", [[encode_example(movi_features(video, flow_as_png=True))]]
    )
    out = tmp_path / "out"
    convert_movi(MoviConfig(src=tmp_path / "src", out=out, resolution="128x128"))
    with np.load(out / "test" / "5" / "gt_codes.npz") as data:
        assert np.array_equal(data["forward_flow"], video.codes["forward"][0])
        assert "depth" not in data.files


def test_backward_flow_direction_is_measured_on_every_video(tmp_path, caplog):
    """A constant motion in kubric's documented convention (forward and backward flow equal)
    and one in the opposite convention: the second is flagged, the first gives the
    pipeline's backward flow = -forward flow."""
    videos = []
    for name, sign in (("documented", 1.0), ("opposite", -1.0)):
        video = fake_video(name, seed=5)
        video.forward[:] = (2.0, -3.0)  # (delta_row, delta_col)
        video.backward[:] = (2.0 * sign, -3.0 * sign)
        for key in ("forward", "backward"):
            video.codes[key] = quantise(getattr(video, key))
        videos.append(encode_example(movi_features(video)))
    write_shards(tmp_path / "src", "train", [videos])
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="diod"):
        convert_movi(MoviConfig(src=tmp_path / "src", out=out, resolution="128x128"))
    ds = open_dataset("movi", out)
    documented, opposite = ds.video("train", "documented"), ds.video("train", "opposite")
    check = ds.meta(documented)["backward_flow_check"]
    assert check["same_direction"] < 1e-3 and check["opposite_direction"] > 7
    flipped = ds.meta(opposite)["backward_flow_check"]
    assert flipped["opposite_direction"] < 1e-3 and flipped["same_direction"] > 7
    assert np.allclose(ds.gt_backward_flow(documented), -ds.gt_flow(documented), atol=1e-3)
    assert np.allclose(ds.gt_flow(documented)[:, 0], -3.0, atol=1e-3)  # dx = delta_col
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "1 of 2 videos" in warning and "opposite" in warning


def test_flow_stage_reads_movi_and_scores_against_its_gt_flow(converted, tmp_path):
    from stages.artifacts import ArtifactStore
    from stages.flow import FlowConfig, compute_flow

    config = FlowConfig(
        dataset="movi",
        root=converted,
        splits=("validation",),
        model="opencv-dis",
        ckpt=None,
        workers=0,
        backward=False,
    )
    art = compute_flow(ArtifactStore(tmp_path / "runs"), config)
    summary = art.manifest["summary"]
    assert summary["videos"] == 1 and summary["pairs"] == 2
    assert summary["epe"]["zero_flow_epe"] > 0  # scored against the converted GT flow


def test_gt_flow_artifact_feeds_the_masks_stage(converted, tmp_path):
    """The GT flow as a flow artifact (what a perfect flow stage would give), backward
    included, and the masks stage on it."""
    from helpers import write_gt_flow_artifact

    from stages.artifacts import ArtifactStore
    from stages.masks.stage import MasksConfig, compute_masks
    from stages.zarrstore import FLOW_STORE, open_video

    store = ArtifactStore(tmp_path / "runs")
    flow = write_gt_flow_artifact(store, "movi", converted, backward=True)
    ds = open_dataset("movi", converted)
    expected = ds.gt_backward_flow(ds.video("validation", "90")).astype(np.float16)
    stored = open_video(flow, FLOW_STORE, "validation", "90")["backward"][:]
    assert np.array_equal(stored, expected)
    art = compute_masks(store, MasksConfig(dataset="movi", workers=1))
    assert art.is_complete and art.upstream == {"flow": flow.id}
    assert art.manifest["summary"]["videos"] == 4


def test_paper_protocol_scores_movi_videos_as_the_field_does(converted, tmp_path):
    """``diod eval --protocol paper`` on the converted MOVi-E: the video-level fg-ARI and
    mBO beside the per-frame scores; predictions equal to the GT score 1 on both."""
    from helpers import export_artifact

    from stages.artifacts import ArtifactStore
    from stages.evaluate import EvalConfig, evaluate, read_scores

    store = ArtifactStore(tmp_path / "runs")
    ds = open_dataset("movi", converted)
    videos = ds.videos("validation")
    gt = {v.name: np.stack([ds.instances(v, i) for i in range(len(v))]) for v in videos}
    slots = max(int(g.max()) for g in gt.values()) + 2
    params = {"which": "model", "batchnorm": "train", "batch_size": 1, "precision": "fp32"}
    export_artifact(
        store, "movi", converted, {k: g.astype(np.uint8) for k, g in gt.items()}, params, slots,
        split="validation",
    )  # fmt: skip
    scores = read_scores(
        evaluate(store, EvalConfig(dataset="movi", split="validation", protocol="paper"))
    )
    assert scores["protocol"] == "paper"
    assert scores["video_fg_ari"] == pytest.approx(1.0) and scores["mbo"] == pytest.approx(1.0)


# -- bad input: one line on stderr, exit 2 ----------------------------------------------------
def _cli_error(capsys, src: Path, out: Path, *extra: str) -> str:
    code, _, err = run(
        ["data", "movi", "--src", str(src), "--out", str(out), "--resolution", "128x128", *extra],
        capsys,
    )
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_missing_src_and_no_shards(tmp_path, capsys):
    err = _cli_error(capsys, tmp_path / "nowhere", tmp_path / "out")
    assert "--src" in err and "not a directory" in err
    (tmp_path / "empty").mkdir()
    err = _cli_error(capsys, tmp_path / "empty", tmp_path / "out")
    assert "no MOVi-E shards found" in err and "movi_e-<split>.tfrecord-*-of-*" in err


def test_bad_crc_names_the_shard_and_record(tmp_path, capsys):
    records = [encode_example(movi_features(fake_video(n, seed=i))) for i, n in enumerate("ab")]
    (shard,) = write_shards(tmp_path / "src", "train", [records])
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF  # inside the second record's data
    shard.write_bytes(bytes(data))
    err = _cli_error(capsys, tmp_path / "src", tmp_path / "out")
    assert str(shard) in err and "record 1" in err and "checksum" in err
    assert (tmp_path / "out" / "train" / "a" / "rgb").is_dir()  # the good record was kept


def test_truncated_shard_names_the_record(tmp_path, capsys):
    records = [encode_example(movi_features(fake_video(n, seed=i))) for i, n in enumerate("ab")]
    (shard,) = write_shards(tmp_path / "src", "train", [records])
    shard.write_bytes(shard.read_bytes()[:-50])
    err = _cli_error(capsys, tmp_path / "src", tmp_path / "out")
    assert str(shard) in err and "record 1" in err and "truncated" in err


def test_missing_feature_is_named(tmp_path, capsys):
    video = fake_video("a", seed=1)
    write_shards(
        tmp_path / "src", "train", [[encode_example(movi_features(video, drop=("segmentations",)))]]
    )
    err = _cli_error(capsys, tmp_path / "src", tmp_path / "out")
    assert "record 0" in err and "'segmentations' missing" in err


def test_wrong_resolution_and_split_are_named(source, tmp_path, capsys):
    src, _ = source
    err = _cli_error(capsys, src / "movi_e" / "128x128", tmp_path / "o1", "--split", "test")
    assert "--splits test" in err and "movi_e-test.tfrecord-*-of-*" in err
    code, _, err = run(
        ["data", "movi", "--src", str(src / "movi_e" / "128x128" / "1.0.0"), "--out",
         str(tmp_path / "o2"), "--limit", "1"],
        capsys,
    )  # fmt: skip
    assert code == 2 and "frames are 128x128" in err and "--resolution 256x256" in err


def test_out_of_another_conversion_is_refused(source, converted, capsys):
    src, _ = source
    err = _cli_error(capsys, src, converted)  # converted with --depth, asked without
    assert "other settings" in err


def test_library_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="--resolution 64x64"):
        convert_movi(MoviConfig(src=tmp_path, out=tmp_path / "o", resolution="64x64"))


def test_damaged_gt_file_is_named(source, tmp_path):
    src, _ = source
    out = tmp_path / "out"
    convert_movi(MoviConfig(src=src, out=out, resolution="128x128", splits=("validation",)))
    (out / "validation" / "90" / "gt_codes.npz").write_bytes(b"not a zip file")
    ds = open_dataset("movi", out)
    with pytest.raises(UserError, match=r"gt_codes\.npz: unreadable"):
        ds.gt_flow(ds.video("validation", "90"))
