"""The artifact store: ids, atomic publish, locking, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stages.artifacts import (
    COMPLETE,
    FAILED,
    INTERRUPTED,
    RUNNING,
    ArtifactStore,
    artifact_id,
)
from stages.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_id_is_stable_and_sensitive():
    base = artifact_id("synth", "flow", {"model": "raft", "iters": 12}, {}, 1)
    assert base == artifact_id("synth", "flow", {"iters": 12, "model": "raft"}, {}, 1)
    assert len(base) == 12
    others = {
        artifact_id("synth", "flow", {"model": "raft", "iters": 24}, {}, 1),
        artifact_id("synth", "flow", {"model": "raft", "iters": 12}, {"masks": "abc"}, 1),
        artifact_id("synth", "flow", {"model": "raft", "iters": 12}, {}, 2),
        artifact_id("kitti", "flow", {"model": "raft", "iters": 12}, {}, 1),
        artifact_id("synth", "masks", {"model": "raft", "iters": 12}, {}, 1),
    }
    assert base not in others and len(others) == 5


def _write(store: ArtifactStore, params: dict, items=("a", "b"), upstream=None):
    with store.open("ds", "stage", params, upstream) as w:
        for name in items:
            if w.has_item(f"items/{name}"):
                continue
            with w.staging(f"items/{name}") as tmp:
                (tmp / "data.txt").write_text(name)
            w.record(name)
        return w.complete({"items": len(items)})


def test_complete_artifact_is_reused_and_found(tmp_path):
    store = ArtifactStore(tmp_path)
    art = _write(store, {"p": 1})
    assert art.status == COMPLETE
    assert (art.path / "items" / "a" / "data.txt").read_text() == "a"
    assert store.latest("ds", "stage").id == art.id
    assert store.get("ds", "stage", art.id[:5]).id == art.id
    with store.open("ds", "stage", {"p": 1}) as w:
        assert w.was_complete
    m = art.manifest
    assert m["params"] == {"p": 1} and m["summary"] == {"items": 2}
    assert {"python"} <= set(m["environment"]) and m["finished"] >= m["created"]


def test_latest_is_newest_complete_and_lineage(tmp_path):
    store = ArtifactStore(tmp_path)
    first = _write(store, {"p": 1})
    time.sleep(0.01)
    second = _write(store, {"p": 2})
    with store.open("ds", "stage", {"p": 3}) as w:  # left running: never the latest
        assert not w.was_complete
    assert store.latest("ds", "stage").id == second.id
    with store.open("ds", "down", {"q": 1}, {"stage": first}) as w:
        down = w.complete()
    assert [a.id for a in store.lineage(down)] == [down.id, first.id]
    with pytest.raises(UserError, match="not complete"):
        store.get("ds", "stage", artifact_id("ds", "stage", {"p": 3}, {}, 1))


def test_missing_artifact_is_user_error(tmp_path):
    with pytest.raises(UserError, match="no complete flow artifact"):
        ArtifactStore(tmp_path).latest("ds", "flow")
    with pytest.raises(UserError, match="no flow artifact 'abc'"):
        ArtifactStore(tmp_path).get("ds", "flow", "abc")


def test_exception_marks_failed_then_rerun_resumes(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError), store.open("ds", "stage", {"p": 1}) as w:
        with w.staging("items/a") as tmp:
            (tmp / "data.txt").write_text("a")
        with w.staging("items/b") as tmp:
            (tmp / "data.txt").write_text("half")
            raise RuntimeError("disk on fire")
    art = store.list("ds", "stage")[0]
    assert art.status == FAILED and art.manifest["error"] == "disk on fire"
    assert (art.path / "items" / "a").exists() and not (art.path / "items" / "b").exists()
    with store.open("ds", "stage", {"p": 1}) as w:
        assert w.resumed and w.has_item("items/a") and not w.has_item("items/b")
        assert w.status == RUNNING


def test_force_recomputes(tmp_path):
    store = ArtifactStore(tmp_path)
    art = _write(store, {"p": 1})
    (art.path / "items" / "stale").mkdir()
    with store.open("ds", "stage", {"p": 1}, force=True) as w:
        assert not w.was_complete and not w.has_item("items/stale")
        w.complete()


def test_staging_replaces_older_item(tmp_path):
    store = ArtifactStore(tmp_path)
    with store.open("ds", "stage", {}) as w:
        for text in ("old", "new"):
            with w.staging("items/x") as tmp:
                (tmp / "data.txt").write_text(text)
        with w.staging("file.json", is_dir=False) as tmp:
            tmp.write_text("{}")
        assert (w.path / "items" / "x" / "data.txt").read_text() == "new"
        assert (w.path / "file.json").read_text() == "{}"


WRITER = textwrap.dedent(
    """
    import sys, time
    from stages.artifacts import ArtifactStore
    store = ArtifactStore(sys.argv[1])
    with store.open("ds", "stage", {"p": 1}) as w:
        for i in range(4):
            name = f"items/{i}"
            if w.has_item(name):
                continue
            with w.staging(name) as tmp:
                (tmp / "data.txt").write_text(str(i))
                if i == int(sys.argv[2]):
                    print("writing", flush=True)
                    time.sleep(60)  # killed here, mid-write
            w.record(str(i))
        w.complete()
    print("done", flush=True)
    """
)


def _spawn(tmp_path: Path, hang_at: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), str(hang_at)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_killed_process_leaves_incomplete_then_rerun_finishes(tmp_path):
    proc = _spawn(tmp_path, hang_at=2)
    assert proc.stdout.readline().strip() == "writing"
    store = ArtifactStore(tmp_path)
    art = store.list("ds", "stage")[0]
    assert art.live_status() == RUNNING
    # a second writer is refused while the first holds the lock
    with pytest.raises(UserError, match="being written by another process"):
        store.open("ds", "stage", {"p": 1}).__enter__()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    art = store.list("ds", "stage")[0]
    assert art.status == RUNNING and art.live_status() == INTERRUPTED
    with pytest.raises(UserError):
        store.latest("ds", "stage")
    assert sorted(p.name for p in (art.path / "items").iterdir()) == ["0", "1"]
    progress = json.loads((art.path / "manifest.json").read_text())["progress"]
    assert set(progress) == {"0", "1"}
    mtime = (art.path / "items" / "0" / "data.txt").stat().st_mtime_ns
    rerun = _spawn(tmp_path, hang_at=-1)
    assert rerun.communicate(timeout=60)[0].strip() == "done"
    done = store.latest("ds", "stage")
    assert done.id == art.id and done.manifest["resumed"]
    assert sorted(p.name for p in (done.path / "items").iterdir()) == ["0", "1", "2", "3"]
    assert (done.path / "items" / "0" / "data.txt").stat().st_mtime_ns == mtime  # not redone
    assert not (done.path / ".staging").exists()


def test_shards_lock_separately(tmp_path):
    store = ArtifactStore(tmp_path)
    a = store.open("ds", "stage", {}, shard=(0, 2)).__enter__()
    b = store.open("ds", "stage", {}, shard=(1, 2)).__enter__()
    with pytest.raises(UserError, match="shard 1/2"):
        store.open("ds", "stage", {}, shard=(1, 2)).__enter__()
    a.__exit__(None, None, None)
    b.__exit__(None, None, None)
