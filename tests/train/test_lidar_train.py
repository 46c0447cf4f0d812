"""DIOD-3D: a LiDAR network trained on the 2D motion masks (burn-in, distillation) with
scene completion, its settings, and its predictions read from the sweeps."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import (
    STREET_SIZE,
    gt_masks_artifact,
    run_cli,
    tiny_request,
    tiny_street_lidar,
    tiny_synth,
)

from stages.artifacts import ArtifactStore
from stages.datasets import open_dataset
from stages.errors import UserError
from stages.lidar.projection import fill_gaps, normalise
from stages.model import DIOD, ModelConfig
from stages.predict import Predictor
from stages.settings import SettingError
from stages.train import checkpoint
from stages.train.config import resolve

SIZE = STREET_SIZE


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    """Street videos with LiDAR, their GT-moving masks, and a 4-step LiDAR burn-in."""
    from stages.train import train

    root, store = tiny_street_lidar(tmp_path_factory.mktemp("street3d"))
    burnin = train(store, tiny_request(modality="lidar", input_size=SIZE, val_videos=1))
    return root, store, burnin


def _rows(art) -> list[dict[str, str]]:
    return list(csv.DictReader((art.path / "logs/train.csv").open()))


def test_a_lidar_network_takes_and_reconstructs_four_channels():
    config = ModelConfig(modality="lidar", num_slots=3, encoder_width=0.125, decoder_channels=8)
    model = DIOD(config).eval()
    assert model.encoder.stem[0].in_channels == 4 and config.channels == 4
    with torch.no_grad():
        out = model(torch.rand(1, 2, 4, 16, 24))
    assert out.recon.shape == (1, 2, 4, 16, 24) and out.masks.shape == (1, 2, 3, 4, 6)
    with pytest.raises(ValueError, match="3 channels; this lidar model takes 4"):
        model(torch.rand(1, 2, 3, 16, 24))
    with pytest.raises(SettingError, match="encoder dinov2-vits14: DINOv2 was trained on RGB"):
        ModelConfig(modality="lidar", encoder="dinov2-vits14")


def test_lidar_runs_take_the_authors_weights_from_the_preset():
    """SPEC-xMOD.md section 2: burn-in 100 L_rec, distillation 50 L_rec and alpha 0.4; point
    drop 0.1 on KITTI, 0.4 on TRI-PD; no colour view. RGB runs keep theirs. The CPU preset
    scales the completion weights by 1/100 and fills the gaps between beams."""
    rgb = resolve("burnin", "kitti", {"input_size": (16, 24)})
    assert rgb.losses.rec_weight == 1.0 and rgb.data.strong_view and rgb.losses.alpha == 0.3
    kitti = resolve("burnin", "kitti", {"input_size": (16, 24), "modality": "lidar"})
    assert kitti.model.modality == "lidar" and not kitti.data.strong_view
    assert (kitti.losses.rec_weight, kitti.losses.alpha, kitti.data.point_drop) == (100, 0.3, 0.1)
    tripd = resolve("burnin", "tripd", {"input_size": (16, 24), "modality": "lidar"})
    assert tripd.data.point_drop == 0.4
    distill = resolve("distill", "kitti", burnin=kitti.to_dict())
    assert distill.model.modality == "lidar"
    assert (distill.losses.rec_weight, distill.losses.alpha) == (50, 0.4)
    assert kitti.model.lidar_fill == 0  # the authors' sparse input
    cpu = resolve("burnin", "synth", {"modality": "lidar"})
    assert (cpu.losses.rec_weight, cpu.model.lidar_fill, cpu.data.strong_view) == (1, 2, False)
    cpu_distill = resolve("distill", "synth", burnin=cpu.to_dict())
    assert (cpu_distill.losses.rec_weight, cpu_distill.losses.alpha) == (0.5, 0.4)
    assert cpu_distill.model.lidar_fill == 2
    straight = resolve("distill", "synth", {"modality": "lidar"})  # --init: no burn-in record
    assert straight.to_dict() == cpu_distill.to_dict()
    given = resolve("distill", "kitti", {"rec_weight": 7.0}, burnin=kitti.to_dict())
    assert given.losses.rec_weight == 7.0  # what is given wins over the table
    with pytest.raises(SettingError, match="strong_view: a colour view of LiDAR"):
        resolve("burnin", "synth", {"modality": "lidar", "strong_view": True})
    with pytest.raises(SettingError, match="modality lidar: distillation keeps the burn-in"):
        resolve("distill", "kitti", {"modality": "lidar"}, burnin=rgb.to_dict())


def test_lidar_burnin_learns_completion_on_range_maps(street):
    root, store, burnin = street
    state = checkpoint.final(burnin)
    assert state["config"]["model"]["modality"] == "lidar"
    assert state["config"]["losses"]["rec_weight"] == 1  # the CPU preset's
    rows = _rows(burnin)
    assert {"completion", "bce", "fg_bg"} <= set(rows[0]) and "mse" not in rows[0]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert "f1_50" in burnin.manifest["summary"]["validation"]  # validated on the sweeps
    model = checkpoint.model_from(state)
    assert model.config.channels == 4 and model.decoder.net[-1].out_channels == 4


def test_the_completion_target_and_point_drop_change_the_run(street):
    from stages.train import train

    _root, store, burnin = street
    own_input = train(store, tiny_request(modality="lidar", input_size=SIZE, val_split="",
                                          completion_target="input", point_drop=0.9))  # fmt: skip
    assert own_input.id != burnin.id
    assert _rows(own_input)[0]["completion"] != _rows(burnin)[0]["completion"]


def test_lidar_distillation_teacher_sees_the_undropped_sweep(street, monkeypatch):
    """The student sees the dropped range maps, the teacher the input before the drop
    (its weak view), and the run completes with the completion term."""
    from stages.train import train
    from stages.train.distill import DistillObjective

    _root, store, burnin = street
    seen: list[dict[str, torch.Tensor]] = []
    original = DistillObjective.loss

    def spy(self, model, batch, step):
        taught = []
        teacher_forward = self.teacher.forward

        def teacher(x, reconstruct=True):
            taught.append(x)
            return teacher_forward(x, reconstruct=reconstruct)

        with monkeypatch.context() as patch:
            patch.setattr(self.teacher, "forward", teacher)
            loss = original(self, model, batch, step)
        seen.append({"teacher": taught[0], **batch})
        return loss

    monkeypatch.setattr(DistillObjective, "loss", spy)
    request = tiny_request("distill", burnin=burnin.id, steps=2, val_split="", point_drop=0.9)
    inherited = {"num_slots", "encoder_width", "decoder_channels", "clip_length", "input_size"}
    request = replace(request, given={k: v for k, v in request.given.items() if k not in inherited})
    art = train(store, request)
    assert checkpoint.final(art)["config"]["losses"]["rec_weight"] == 0.5  # the CPU preset's
    assert "completion" in _rows(art)[0]
    for batch in seen:
        assert torch.equal(batch["teacher"], batch["lidar_weak"])
    assert not torch.equal(seen[0]["lidar"], seen[0]["lidar_weak"])  # points were dropped


def test_a_lidar_model_predicts_from_the_sweeps(street):
    """Export runs a LiDAR model on each frame's sweep, projected on the input grid and
    normalised as in training; its scores are a DIOD-3D row of the report."""
    from stages.evaluate import EvalConfig, evaluate
    from stages.export import ExportConfig, export
    from stages.report import results

    root, store, burnin = street
    art = export(store, ExportConfig("synth", split="val", model=burnin.id, device="cpu"))
    assert art.manifest["summary"]["videos"] == 1
    evaluate(store, EvalConfig("synth", predictions=art.id))
    assert [row.label for row in results(store, "synth", "val")] == ["DIOD-3D burn-in"]
    model = checkpoint.model_from(checkpoint.final(burnin)).eval()
    ds = open_dataset("synth", root)
    video = ds.videos("val")[0]
    predictor = Predictor(model, SIZE, 0.0, 3, 1, torch.device("cpu"), "fp32")
    first = next(iter(predictor.video_inputs(ds, video)))
    fill = model.config.lidar_fill
    expected = fill_gaps(normalise(ds.lidar(video, 0, SIZE)), fill).transpose(2, 0, 1)
    np.testing.assert_array_equal(first.numpy(), expected)
    with pytest.raises(UserError, match="a lidar model does not run on RGB frames alone"):
        predictor.rgb_inputs([np.zeros((*SIZE, 3), np.uint8)])


def test_lidar_training_without_lidar_is_one_error_line(tmp_path, capsys):
    root = tiny_synth(tmp_path / "flat")
    store = ArtifactStore(tmp_path / "runs")
    masks = gt_masks_artifact(store, root)
    from stages.train import train

    with pytest.raises(UserError, match="no LiDAR; a LiDAR network trains on a sweep per frame"):
        train(store, tiny_request(modality="lidar"))
    code, _out, err = run_cli(
        ["--workspace", str(tmp_path / "runs"), "train", "--stage", "burnin", "--dataset",
         "synth", "--masks", masks.id, "--modality", "lidar", "--steps", "1"],
        capsys,
    )  # fmt: skip
    assert code == 2 and "no LiDAR" in err and "Traceback" not in err
