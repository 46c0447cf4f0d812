"""`diod report`: rows named from the lineage of each eval artifact, newest per kind."""

from __future__ import annotations

import json

import pytest

from diodcli.main import main
from stages.artifacts import ArtifactStore, atomic_write_json
from stages.report import results


def _scores(f1: float, static: float) -> dict:
    return {
        "fg_ari": 0.5,
        "all_ari": 0.4,
        "f1_50": f1,
        "precision": 0.6,
        "recall": 0.3,
        "by_motion": {"moving": {"recall": 0.7}, "static": {"recall": static}},
    }


def _eval(store, upstream, scores, tag, protocol=None, pixels=None):
    params = {"split": "val", "tag": tag}
    if protocol is not None:  # older eval artifacts have no protocol: they are diod's
        params["protocol"] = protocol
    if pixels is not None:  # older ones score every pixel
        params["pixels"] = pixels
    with store.open("synth", "eval", params, upstream) as w:
        atomic_write_json(w.path / "scores.json", scores)
        return w.complete()


@pytest.fixture
def store(tmp_path):
    store = ArtifactStore(tmp_path)
    with store.open("synth", "masks", {"m": 1}) as w:
        masks = w.complete()
    with store.open("synth", "burnin", {"b": 1}, {"masks": masks}) as w:
        burnin = w.complete()
    models = {"burnin": burnin}
    for name, params in (
        ("dis", {}),
        ("o2o", {"distill": {"connection": "one-to-one", "motion_masks": True}}),
    ):
        with store.open("synth", "distill", params, {"burnin": burnin}) as w:
            models[name] = w.complete()
    _eval(store, {"masks": masks}, _scores(0.05, 0.0), "m")
    for i, (name, model) in enumerate(models.items()):
        stage = "burnin" if name == "burnin" else "distill"
        with store.open("synth", "export", {"i": i}, {stage: model}) as w:
            export = w.complete()
        _eval(store, {"export": export}, _scores(0.1 * (i + 1), 0.1 * i), name, "diod")
        if name == "dis":  # the same predictions scored by the authors' protocol too
            _eval(store, {"export": export}, _scores(0.5, 0.1), "dis-paper", "paper")
            # newer, at LiDAR pixels only: a diagnostic, never a report row
            _eval(store, {"export": export}, _scores(0.9, 0.1), "dis-lidar", "diod", "lidar")
    # an older burn-in score that the newest one hides
    _eval(store, {"masks": masks}, _scores(0.01, 0.0), "old")
    return store, models


def test_rows_follow_lineage(store):
    store, models = store
    rows = [r.as_dict() for r in results(store, "synth", "val")]
    assert [(r["label"], r["protocol"]) for r in rows] == [
        ("motion masks", "diod"),
        ("burn-in (BMOD+)", "diod"),
        ("DIOD", "diod"),
        ("DIOD", "paper"),
        ("DIOD (one-to-one)", "diod"),
    ]
    assert rows[1]["source"] == models["burnin"].id and rows[1]["f1_50"] == pytest.approx(0.1)
    assert rows[2]["f1_50"] == pytest.approx(0.2)  # not the LiDAR-pixel score
    assert rows[3]["f1_50"] == 0.5 and rows[3]["source"] == rows[2]["source"]
    assert rows[4]["static_recall"] == pytest.approx(0.2)
    assert rows[0]["f1_50"] == 0.01  # the newest masks score
    assert len(results(store, "synth", "val", every=True)) == 6
    assert results(store, "synth", "train") == []


def test_cli(store, capsys):
    store, _ = store
    main(["--workspace", str(store.workspace), "report", "--dataset", "synth", "--json"])
    assert len(json.loads(capsys.readouterr().out)) == 5
    main(["--workspace", str(store.workspace), "report", "--dataset", "synth"])
    out = capsys.readouterr().out
    assert "DIOD (one-to-one)" in out and "protocol" in out and "paper" in out
    with pytest.raises(SystemExit) as exc:
        main(["--workspace", str(store.workspace), "report", "--dataset", "kitti"])
    assert exc.value.code == 2 and "no complete eval" in capsys.readouterr().err
