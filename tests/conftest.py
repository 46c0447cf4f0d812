"""Test isolation for process-wide state that the CLI sets up.

`diod` configures the "diod" logger (handler on the then-current stderr, level) and the
progress settings once per process; a CLI run inside a test would leave them configured for
every later test, bound to a captured stream that pytest has since closed.
"""

from __future__ import annotations

import logging
import os

import pytest

from stages import progress


@pytest.fixture(autouse=True, scope="session")
def _scratch_cache(tmp_path_factory):
    """Machine-local records (``stages.train.memory_format``) go to a scratch folder, for
    this process and the CLI processes the tests start, never to the user's ~/.cache."""
    os.environ["DIOD_CACHE"] = str(tmp_path_factory.mktemp("diod-cache"))


@pytest.fixture(autouse=True)
def _reset_cli_logging():
    logger = logging.getLogger("diod")
    saved = (list(logger.handlers), logger.level, logger.propagate, dict(progress._settings))
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]
    progress._settings.clear()
    progress._settings.update(saved[3])


@pytest.fixture(scope="module")
def tiny_masks(tmp_path_factory):
    """(root, store, masks): a tiny synth dataset, a workspace and a masks artifact of its
    GT moving objects (what a perfect motion-mask stage would give), per test module."""
    from helpers import gt_masks_artifact, tiny_synth

    from stages.artifacts import ArtifactStore

    base = tmp_path_factory.mktemp("tiny")
    root = tiny_synth(base / "synth")
    store = ArtifactStore(base / "runs")
    return root, store, gt_masks_artifact(store, root)
