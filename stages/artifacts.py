"""Versioned, content-addressed artifacts on disk.

Layout: ``<workspace>/<dataset>/<stage>/<artifact-id>/manifest.json`` plus the payload.
The id is a short hash of everything that determines the output (dataset, stage, resolved
parameters, upstream ids, payload format version), so rerunning a stage with the same inputs
finds the same directory: a complete artifact is reused, an interrupted one is resumed.

Crash safety rests on three rules:
- the manifest is only ever replaced whole (temp file + ``os.replace``);
- every payload item (a video's Zarr group, a checkpoint) is written under ``.staging/`` and
  renamed into place, so a reader never sees half of one;
- ``status == "complete"`` is written last, after every item is in place.
A process killed at any point therefore leaves an artifact whose status is ``running``;
nothing downstream consumes it, and the next run of the same command resumes it. An
exclusive ``flock`` (released by the kernel when its holder dies) keeps two processes from
writing the same artifact, or the same shard of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from stages import __version__
from stages.errors import UserError

RUNNING = "running"
COMPLETE = "complete"
FAILED = "failed"
INTERRUPTED = "interrupted"  # reported for a "running" artifact whose writer is gone

MANIFEST = "manifest.json"
STAGING = ".staging"
ID_LENGTH = 12


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal configs hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def artifact_id(
    dataset: str,
    stage: str,
    params: Mapping[str, Any],
    upstream: Mapping[str, str],
    format_version: int,
) -> str:
    blob = canonical_json(
        {
            "dataset": dataset,
            "stage": stage,
            "params": dict(params),
            "upstream": dict(upstream),
            "format": format_version,
        }
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:ID_LENGTH]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save that a kill mid-write cannot leave half-written (the old file stays).
    torch is imported here, not at the top: artifacts are read by commands that never
    touch a model."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(
        path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()
    )


def publish(tmp: Path, target: Path) -> None:
    """Rename a finished file or directory into place, so a reader sees all of it or none.

    A directory replaces an older one at ``target`` by two renames (the old one aside, the
    new one in), the only moment without either being the instant between them.
    """
    if not tmp.is_dir():
        os.replace(tmp, target)
        return
    if target.exists():  # replace an older version: move it aside first, then swap in
        trash = target.with_name(f".{target.name}.old.{os.getpid()}")
        os.rename(target, trash)
        os.rename(tmp, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, target)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable JSON ({exc})") from None


@lru_cache(maxsize=1)
def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """What ran the stage. torch is reported only if the stage already imported it."""
    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": sys.platform}
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["cuda"] = torch.version.cuda
        env["cuda_available"] = bool(torch.cuda.is_available())
        if torch.cuda.is_available():
            env["device"] = torch.cuda.get_device_name(0)
    return env


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _lock_is_held(lock_path: Path) -> bool:
    if not lock_path.exists():
        return False
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@dataclass
class Artifact:
    """A read-only view of one artifact directory and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Artifact:
        return cls(path, read_json(path / MANIFEST))

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def stage(self) -> str:
        return self.manifest["stage"]

    @property
    def dataset(self) -> str:
        return self.manifest["dataset"]

    @property
    def params(self) -> dict[str, Any]:
        return self.manifest["params"]

    @property
    def upstream(self) -> dict[str, str]:
        return self.manifest.get("upstream", {})

    @property
    def status(self) -> str:
        return self.manifest["status"]

    @property
    def is_complete(self) -> bool:
        return self.status == COMPLETE

    def live_status(self) -> str:
        """``running`` only while some process holds a lock on it, else ``interrupted``."""
        if self.status != RUNNING:
            return self.status
        held = any(_lock_is_held(p) for p in self.path.glob(".lock*"))
        return RUNNING if held else INTERRUPTED

    def __str__(self) -> str:
        return f"{self.dataset}/{self.stage}/{self.id}"


class ArtifactStore:
    """All artifacts under one workspace directory."""

    def __init__(self, workspace: Path | str):
        self.workspace = Path(workspace)

    def path_for(self, dataset: str, stage: str, art_id: str) -> Path:
        return self.workspace / dataset / stage / art_id

    def list(self, dataset: str | None = None, stage: str | None = None) -> list[Artifact]:
        """Every artifact with a readable manifest, oldest first."""
        pattern = f"{dataset or '*'}/{stage or '*'}/*/{MANIFEST}"
        found = []
        for manifest in self.workspace.glob(pattern):
            with contextlib.suppress(OSError, ValueError, UserError, KeyError):
                art = Artifact.load(manifest.parent)
                if art.id == manifest.parent.name:
                    found.append(art)
        return sorted(found, key=lambda a: (a.manifest.get("created", ""), a.id))

    def get(self, dataset: str, stage: str, ref: str, *, require_complete: bool = True) -> Artifact:
        """An artifact by id or unique id prefix."""
        matches = [a for a in self.list(dataset, stage) if a.id.startswith(ref)]
        if not matches:
            raise UserError(
                f"no {stage} artifact '{ref}' for dataset '{dataset}' in {self.workspace}"
            )
        if len(matches) > 1:
            raise UserError(
                f"{stage} artifact prefix '{ref}' is ambiguous: {', '.join(a.id for a in matches)}"
            )
        art = matches[0]
        if require_complete and not art.is_complete:
            raise UserError(
                f"{stage} artifact {art.id} is {art.live_status()}, not complete: rerun its stage"
            )
        return art

    def latest(self, dataset: str, stage: str) -> Artifact:
        """The newest complete artifact of a stage (by completion time)."""
        done = [a for a in self.list(dataset, stage) if a.is_complete]
        if not done:
            raise UserError(
                f"no complete {stage} artifact for dataset '{dataset}' in {self.workspace}: "
                f"run `diod {stage}` first"
            )
        return max(done, key=lambda a: (a.manifest.get("finished", ""), a.id))

    def resolve(self, dataset: str, stage: str, ref: str | None) -> Artifact:
        return self.get(dataset, stage, ref) if ref else self.latest(dataset, stage)

    def lineage(self, art: Artifact) -> list[Artifact]:
        """The artifact followed by all its ancestors, breadth first."""
        out, queue, seen = [], [art], set()
        while queue:
            cur = queue.pop(0)
            if cur.path in seen:
                continue
            seen.add(cur.path)
            out.append(cur)
            for up_stage, up_id in cur.upstream.items():
                up_path = self.path_for(cur.dataset, up_stage, up_id)
                if (up_path / MANIFEST).exists():
                    queue.append(Artifact.load(up_path))
        return out

    def open(
        self,
        dataset: str,
        stage: str,
        params: Mapping[str, Any],
        upstream: Mapping[str, Artifact] | None = None,
        *,
        format_version: int = 1,
        force: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> ArtifactWriter:
        """Create, resume or (with ``force``) redo the artifact these inputs determine."""
        up_ids = {s: a.id for s, a in (upstream or {}).items()}
        art_id = artifact_id(dataset, stage, params, up_ids, format_version)
        return ArtifactWriter(
            self.path_for(dataset, stage, art_id),
            dict(
                id=art_id,
                dataset=dataset,
                stage=stage,
                params=dict(params),
                upstream=up_ids,
                format_version=format_version,
            ),
            force=force,
            shard=shard,
        )


class ArtifactWriter:
    """Exclusive write access to one artifact; use as a context manager.

    Inside the ``with`` block the artifact is ``running``; an exception marks it ``failed``
    (with the message), a kill leaves it ``running`` with no lock holder, and both are
    resumed by the next ``open`` of the same inputs. ``complete()`` publishes it.
    """

    def __init__(
        self, path: Path, identity: dict[str, Any], *, force: bool, shard: tuple[int, int]
    ):
        self.path = path
        self.identity = identity
        self.force = force
        self.shard = shard
        self._lock_fd: int | None = None
        self.was_complete = False
        self.resumed = False

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> ArtifactWriter:
        self.path.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self._start()
        except BaseException:
            self._release_lock()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc is not None and self.status != COMPLETE:
                message = str(exc) or exc_type.__name__
                self.update(lambda m: m.update(status=FAILED, error=message, updated=now_iso()))
        finally:
            self._release_lock()

    def _acquire_lock(self) -> None:
        index, count = self.shard
        name = ".lock" if count == 1 else f".lock-shard{index}of{count}"
        fd = os.open(self.path / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            what = "it" if count == 1 else f"shard {index}/{count} of it"
            raise UserError(
                f"artifact {self.path} is being written by another process: wait for {what} "
                "to finish or stop that process"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _start(self) -> None:
        manifest_path = self.path / MANIFEST
        existing = read_json(manifest_path) if manifest_path.exists() else None
        if existing is not None and existing.get("status") == COMPLETE and not self.force:
            self.was_complete = True
            return
        if existing is not None and self.force:
            self._clear_payload()
            existing = None
        staging = self.path / STAGING
        if staging.exists() and self.shard[1] == 1:
            shutil.rmtree(staging, ignore_errors=True)  # leftovers of a killed writer
        if existing is None:
            manifest = dict(
                self.identity,
                status=RUNNING,
                created=now_iso(),
                updated=now_iso(),
                package_version=__version__,
                git_revision=git_revision(),
                environment=environment(),
                progress={},
                summary={},
            )
            with self._manifest_lock():
                atomic_write_json(manifest_path, manifest)
        else:
            self.resumed = True

            def restart(m: dict[str, Any]) -> None:
                m.update(status=RUNNING, updated=now_iso(), environment=environment())
                m.pop("error", None)
                m.setdefault("resumed", []).append(now_iso())

            self.update(restart)

    def _clear_payload(self) -> None:
        for child in self.path.iterdir():
            if child.name.startswith(".lock"):
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()

    # -- manifest ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _manifest_lock(self) -> Iterator[None]:
        fd = os.open(self.path / ".manifest.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def manifest(self) -> dict[str, Any]:
        return read_json(self.path / MANIFEST)

    @property
    def status(self) -> str:
        return self.manifest["status"]

    @property
    def id(self) -> str:
        return self.identity["id"]

    def update(self, change) -> dict[str, Any]:
        """Read-modify-write the manifest under a lock shared by all shards."""
        with self._manifest_lock():
            manifest = read_json(self.path / MANIFEST)
            change(manifest)
            atomic_write_json(self.path / MANIFEST, manifest)
        return manifest

    def artifact(self) -> Artifact:
        return Artifact.load(self.path)

    # -- payload -------------------------------------------------------------------------
    def has_item(self, relpath: str) -> bool:
        """Whether a payload item was published (by this or an earlier, killed run)."""
        return (self.path / relpath).exists()

    @contextlib.contextmanager
    def staging(self, relpath: str, *, is_dir: bool = True) -> Iterator[Path]:
        """A temporary path that is renamed to ``relpath`` when the block succeeds."""
        target = self.path / relpath
        tmp = (
            self.path
            / STAGING
            / f"{relpath.replace('/', '__')}.{os.getpid()}.{time.monotonic_ns()}"
        )
        tmp.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            tmp.mkdir()
        try:
            yield tmp
        except BaseException:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            raise
        target.parent.mkdir(parents=True, exist_ok=True)
        publish(tmp, target)

    def record(self, key: str, info: Any = True) -> None:
        """Note progress on one item (e.g. a video) in the manifest."""

        def add(m: dict[str, Any]) -> None:
            m.setdefault("progress", {})[key] = info
            m["updated"] = now_iso()

        self.update(add)

    def complete(self, summary: Mapping[str, Any] | None = None) -> Artifact:
        """Publish: status ``complete`` is the last thing written."""

        def finish(m: dict[str, Any]) -> None:
            m["summary"].update(summary or {})
            m.update(status=COMPLETE, finished=now_iso(), updated=now_iso())

        shutil.rmtree(self.path / STAGING, ignore_errors=True)
        self.update(finish)
        return self.artifact()


_hashes: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime): a run resolves its
    configuration more than once, and a DINOv2 ViT-g weights file is 4.5 GB."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]
