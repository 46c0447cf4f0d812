"""Dataset adapters, looked up by the name given to ``--dataset``."""

from __future__ import annotations

from pathlib import Path

from stages.datasets.base import Dataset, Video
from stages.datasets.folder import FolderDataset
from stages.datasets.kitti import KittiDataset
from stages.datasets.movi import MoviDataset
from stages.datasets.synth import SynthDataset
from stages.datasets.tripd import TripdDataset
from stages.errors import UserError

ADAPTERS: dict[str, type[Dataset]] = {
    cls.name: cls for cls in (FolderDataset, SynthDataset, KittiDataset, TripdDataset, MoviDataset)
}


def open_dataset(name: str, root: Path | str) -> Dataset:
    try:
        adapter = ADAPTERS[name]
    except KeyError:
        raise UserError(
            f"--dataset {name}: unknown dataset (expected one of {', '.join(sorted(ADAPTERS))})"
        ) from None
    return adapter(root)


__all__ = ["ADAPTERS", "Dataset", "Video", "open_dataset"]
