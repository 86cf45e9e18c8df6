"""Test rasters: the real held-out crop in tests/data, and small GeoTIFFs written with GDAL
(shared by the engine's and the plugin's tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal, osr

gdal.UseExceptions()

SAMPLE = Path(__file__).resolve().parents[1] / "engine" / "misr_engine" / "data" / "sample"
"""The engine's embedded sample scene: 9 Sentinel-2 NIR frames with masks and the 10 m reference."""
HOLDOUT_HR = Path(__file__).resolve().parent / "data" / "s2_holdout_hr.tif"
"""A real held-out Sentinel-2 10 m crop (B08, 216 x 216 px; see scripts/make_sample.py)."""
UTM33 = 32633
GEOTRANSFORM = (500000.0, 30.0, 0.0, 4000000.0, 0.0, -30.0)


def make_raster(path: Path | str, data: np.ndarray, data_type: int = gdal.GDT_UInt16,
                geotransform: tuple[float, ...] = GEOTRANSFORM, epsg: int | None = UTM33,
                nodata: float | None = None, options: list[str] | None = None,
                wkt: str | None = None) -> Path:
    """Write `data` ((H, W) or (bands, H, W)) as a GeoTIFF and return its path. The CRS is
    EPSG:`epsg` (None: no CRS), or the given `wkt` ('' : no CRS)."""
    data = np.asarray(data)
    bands = data[None] if data.ndim == 2 else data
    count, height, width = bands.shape
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), width, height, count, data_type,
                                                   options=options or [])
    dataset.SetGeoTransform(geotransform)
    if wkt is None and epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        wkt = srs.ExportToWkt()
    if wkt:
        dataset.SetProjection(wkt)
    for index, band_data in enumerate(bands):
        band = dataset.GetRasterBand(index + 1)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteArray(band_data)
    dataset.FlushCache()
    dataset = None
    return Path(path)


def textured(height: int, width: int, seed: int, level: float = 1000.0) -> np.ndarray:
    """One textured scene (level + 300 +- 220) seen with noise `seed`: frames of one time series."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    field = np.sin(x / 2.3) * np.cos(y / 3.1) * 200 + rng.normal(0, 10, (height, width))
    return (level + 300 + field).astype(np.float32)
