"""xMOD: an RGB and a LiDAR network distilled together, labels crossed between modalities;
the stage's artifact, resume, sources, export of either network and one-line errors."""

from __future__ import annotations

import csv
from dataclasses import replace

import pytest
import torch
from helpers import STREET_SIZE, run_cli, tiny_request, tiny_street_lidar

from stages import modelfile
from stages.errors import UserError
from stages.train import checkpoint

SIZE = STREET_SIZE
#: settings the two source runs fix; an xmod request leaves them to the sources
INHERITED = {"num_slots", "encoder_width", "decoder_channels", "clip_length", "input_size"}


def _request(rgb, lidar, **overrides):
    request = tiny_request("xmod", **{"steps": 3, "val_split": ""} | overrides)
    given = {k: v for k, v in request.given.items() if k not in INHERITED - overrides.keys()}
    return replace(request, given=given, rgb_model=rgb, lidar_model=lidar)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Street videos with LiDAR, their GT-moving masks, an RGB and a LiDAR burn-in."""
    from stages.train import train

    root, store = tiny_street_lidar(tmp_path_factory.mktemp("xmod"))
    rgb = train(store, tiny_request(input_size=SIZE, val_split=""))
    lidar = train(store, tiny_request(modality="lidar", input_size=SIZE, val_split=""))
    return store, rgb, lidar


def _rows(art) -> list[dict[str, str]]:
    return list(csv.DictReader((art.path / "logs/train.csv").open()))


def test_xmod_trains_both_networks_with_labels_from_the_other_modality(sources, monkeypatch):
    """cross (the paper): each student's pseudo-labels come from the other modality's
    teacher; either way each student's motion masks are judged by the other teacher."""
    from stages.train import train, xmod

    store, rgb, lidar = sources
    made: dict[int, str] = {}  # id of a teacher's labels -> the teacher's modality
    seen: list[tuple[int, str, str]] = []  # (student channels, labels from, judge from)
    real_labels, real_loss = xmod.teacher_labels, xmod.student_loss

    calls = []

    def labels(taught, config):
        out = real_labels(taught, config)
        made[id(out)] = made[id(out.fg)] = ("rgb", "lidar")[len(calls) % 2]  # in this order
        calls.append(out)  # kept alive: ids stay unique
        return out

    def loss(out, seen_view, projection, batch, labels_, judge, settings, config):
        seen.append((out.recon.shape[2], made[id(labels_)], made[id(judge)]))
        return real_loss(out, seen_view, projection, batch, labels_, judge, settings, config)

    monkeypatch.setattr(xmod, "teacher_labels", labels)
    monkeypatch.setattr(xmod, "student_loss", loss)
    art = train(store, _request(rgb.id, lidar.id, val_split="val", val_videos=1))
    assert art.stage == "xmod" and art.upstream == {"masks": rgb.upstream["masks"]}
    assert set(seen[:2]) == {(3, "lidar", "lidar"), (4, "rgb", "rgb")}
    state = checkpoint.final(art)
    assert set(state["model_config"]) == {"rgb", "lidar"} and "teacher" in state["extra"]
    assert state["lidar_config"]["model"]["modality"] == "lidar"
    row = _rows(art)[0]
    assert {"rgb_mse", "rgb_teacher_bce", "lidar_completion", "lidar_motion_bce"} <= set(row)
    validation = art.manifest["summary"]["validation"]
    assert {"rgb_f1_50", "lidar_f1_50"} <= set(validation)
    for modality, source in (("rgb", rgb), ("lidar", lidar)):
        student = checkpoint.model_from(state, "model", modality)
        teacher = checkpoint.model_from(state, "teacher", modality)
        start = checkpoint.model_from(checkpoint.final(source))
        assert student.config == start.config
        pairs = zip(student.parameters(), start.parameters(), strict=True)
        moved = [not torch.equal(a, b) for a, b in pairs]
        assert any(moved)  # the student trained from its source's weights
        assert not torch.equal(teacher.decoder.net[0].weight, student.decoder.net[0].weight)

    seen.clear()
    same = train(store, _request(rgb.id, lidar.id, dist_source="same"))
    assert same.id != art.id
    assert set(seen[:2]) == {(3, "rgb", "lidar"), (4, "lidar", "rgb")}


def test_a_stopped_xmod_run_resumes_to_the_uninterrupted_one(sources, tmp_path, monkeypatch):
    from stages.train import train, xmod

    store, rgb, lidar = sources
    whole = train(store, _request(rgb.id, lidar.id, steps=4, checkpoint_every=2, seed=5))
    config = _request(rgb.id, lidar.id, steps=4, checkpoint_every=2, seed=5, force=True)

    def stop(self, model, step):
        if step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(xmod.XmodObjective, "after_step", stop)
    with pytest.raises(KeyboardInterrupt):
        train(store, config)
    monkeypatch.undo()
    resumed = train(store, replace(config, force=False, resume=True))
    assert resumed.id == whole.id and resumed.manifest["resumed"]
    a, b = checkpoint.final(whole), checkpoint.final(resumed)
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    assert all(torch.equal(v, b["extra"]["teacher"][k]) for k, v in a["extra"]["teacher"].items())


def test_either_network_or_both_fused_export_and_report_as_their_rows(
    sources, tmp_path, monkeypatch
):
    """A model file can be a source; export runs the RGB network on frames, the LiDAR one
    on the sweeps, or both fused frame by frame; the report names them xMOD-2D, xMOD-3D
    and xMOD fused."""
    from stages import export as export_stage
    from stages.evaluate import EvalConfig, evaluate
    from stages.export import ExportConfig, export
    from stages.fusion import fuse_maps
    from stages.report import results
    from stages.train import train

    store, rgb, lidar = sources
    path = modelfile.save(modelfile.from_artifact(lidar), tmp_path / "lidar.pt")
    art = train(store, _request(rgb.id, str(path), steps=1, checkpoint_every=1))
    assert art.params["sources"]["lidar"]["sha256"]
    fused_frames: list[tuple[torch.Tensor, torch.Tensor]] = []

    def spy(rgb_maps: torch.Tensor, lidar_maps: torch.Tensor, background: int) -> torch.Tensor:
        fused_frames.append((rgb_maps, lidar_maps))
        return fuse_maps(rgb_maps, lidar_maps, background)

    monkeypatch.setattr(export_stage, "fuse_maps", spy)
    for modality in ("rgb", "lidar", "fused"):
        predictions = export(
            store, ExportConfig("synth", model=art.id, modality=modality, device="cpu")
        )
        assert predictions.params["modality"] == modality
        evaluate(store, EvalConfig("synth", predictions=predictions.id))
    # every frame of the split fused once, from two networks' different maps of it
    assert sum(len(r) for r, _ in fused_frames) == predictions.manifest["summary"]["frames"]
    assert all(r.shape == m.shape and not torch.equal(r, m) for r, m in fused_frames)
    labels = {row.label for row in results(store, "synth", "val")}
    assert {"xMOD-2D", "xMOD-3D", "xMOD fused"} <= labels
    with pytest.raises(UserError, match="--modality lidar: .* is a rgb model"):
        export(store, ExportConfig("synth", model=rgb.id, modality="lidar", device="cpu"))
    with pytest.raises(UserError, match="--modality fused: .* has one network"):
        export(store, ExportConfig("synth", model=rgb.id, modality="fused", device="cpu"))


def test_wrong_sources_and_options_are_one_error_line(sources, capsys):
    from stages.train import train

    store, rgb, lidar = sources
    with pytest.raises(UserError, match="--rgb-model .*: a lidar network; expected a rgb one"):
        train(store, _request(lidar.id, lidar.id))
    short = train(store, tiny_request(input_size=SIZE, clip_length=2, val_split="", steps=1))
    with pytest.raises(UserError, match="trained with clip_length 2 and 3"):
        train(store, _request(short.id, lidar.id))
    with pytest.raises(UserError, match="give --rgb-model and --lidar-model"):
        train(store, _request(rgb.id, None))
    with pytest.raises(UserError, match="dist_source: only for --stage xmod"):
        train(store, tiny_request("burnin", dist_source="same"))
    workspace = str(store.workspace)
    code, _out, err = run_cli(
        ["--workspace", workspace, "train", "--stage", "burnin", "--dataset", "synth",
         "--rgb-model", rgb.id],
        capsys,
    )  # fmt: skip
    assert code == 2 and "--rgb-model: only for --stage xmod" in err and "Traceback" not in err


def test_a_source_that_found_no_object_is_warned_of(sources, monkeypatch, caplog):
    """A blind source (F1@50 0 in its validation) makes xMOD collapse: said before the run."""
    from stages.train import train, xmod

    store, rgb, lidar = sources
    loaded = xmod.load_source

    def blind_lidar(store, ref, option):
        source = loaded(store, ref, option)
        blind = {"f1_50": 0.0, "all_ari": 0.0}
        return replace(source, validation=blind) if option == "--lidar-model" else source

    monkeypatch.setattr(xmod, "load_source", blind_lidar)
    with caplog.at_level("WARNING", logger="diod"):
        assert train(store, replace(_request(rgb.id, lidar.id), dry_run=True)) is None
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1
    assert warned[0].startswith(f"--lidar-model synth/burnin/{lidar.id} found no object")
    assert "none of the rgb student's motion masks" in warned[0]
