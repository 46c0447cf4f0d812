"""Deterministic ``.npz`` files: equal arrays give equal bytes, so a rerun of a generator or
converter reproduces its output exactly (``np.savez_compressed`` stamps the current time)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

#: fixed zip member time
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` with fixed member timestamps."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())
