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
    dataset = _created(path, width, height, count, data_type, options or [], geotransform, epsg, wkt)
    for index, band_data in enumerate(bands):
        band = dataset.GetRasterBand(index + 1)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteArray(band_data)
    dataset.FlushCache()
    dataset = None
    return Path(path)


def sparse_raster(path: Path, width: int, height: int) -> Path:
    """A GeoTIFF declaring `width` x `height` pixels and holding almost none (a few kB): a 'bomb'."""
    options = ["TILED=YES", "SPARSE_OK=TRUE", "COMPRESS=DEFLATE", "BIGTIFF=YES"]
    _created(path, width, height, 1, gdal.GDT_UInt16, options, GEOTRANSFORM, UTM33, None).FlushCache()  # and closed
    return path


def _created(path: Path | str, width: int, height: int, count: int, data_type: int, options: list[str],
             geotransform: tuple[float, ...], epsg: int | None, wkt: str | None) -> gdal.Dataset:
    """A new GeoTIFF on `geotransform`, its CRS EPSG:`epsg` or `wkt` (as `make_raster` says)."""
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), width, height, count, data_type, options=options)
    dataset.SetGeoTransform(geotransform)
    if wkt is None and epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        wkt = srs.ExportToWkt()
    if wkt:
        dataset.SetProjection(wkt)
    return dataset


def textured(height: int, width: int, seed: int, level: float = 1000.0) -> np.ndarray:
    """One textured scene (level + 300 +- 220) seen with noise `seed`: frames of one time series."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    field = np.sin(x / 2.3) * np.cos(y / 3.1) * 200 + rng.normal(0, 10, (height, width))
    return (level + 300 + field).astype(np.float32)


HOLDOUT_RGB = Path(__file__).resolve().parent / "data" / "s2_holdout_rgb.tif"
"""The held-out crop of HOLDOUT_HR in B04, B03, B02 (3 bands, described so; scripts/make_sample.py)."""


def simulated_series(folder: Path, count: int = 6, seed: int = 7, hr_path: Path = HOLDOUT_RGB,
                     clouds: bool = True) -> tuple[list[str], list[str], np.ndarray]:
    """A time series of `count` multi-band LR frames (uint16, band descriptions kept) simulated
    from the real HR bands of `hr_path` with the engine's degradation model, the same shifts,
    PSFs and clouds in every band, and their binary masks. Returns (frames, masks, HR bands)."""
    from misr_engine.datasets.samples import MARGIN
    from misr_engine.datasets.simulate import Degradation, degrade

    source = gdal.Open(str(hr_path))
    hr = source.ReadAsArray().astype(np.float32).reshape(source.RasterCount, source.RasterYSize, -1)
    names = [source.GetRasterBand(i + 1).GetDescription() for i in range(source.RasterCount)]
    conditions = Degradation() if clouds else Degradation(cloud_probability=0.0, full_cloud_probability=0.0)
    stacks = [degrade(band, count, np.random.default_rng(seed), conditions, MARGIN) for band in hr]
    x0, dx, _, y0, _, dy = source.GetGeoTransform()
    geotransform = (x0 + MARGIN * dx, 3 * dx, 0.0, y0 + MARGIN * dy, 0.0, 3 * dy)
    folder.mkdir(parents=True, exist_ok=True)
    frames, masks = [], []
    for t in range(count):
        data = np.clip(np.round([s.frames[t] for s in stacks]), 0, 65535).astype(np.uint16)
        frames.append(str(make_raster(folder / f"frame_{t + 1:02d}.tif", data, geotransform=geotransform,
                                      wkt=source.GetProjection())))
        dataset = gdal.Open(frames[-1], gdal.GA_Update)
        for index, name in enumerate(names, start=1):
            dataset.GetRasterBand(index).SetDescription(name)
        dataset = None
        masks.append(str(make_raster(folder / f"mask_{t + 1:02d}.tif", stacks[0].masks[t].astype(np.uint8),
                                     gdal.GDT_Byte, geotransform=geotransform, wkt=source.GetProjection())))
    return frames, masks, np.stack([s.hr for s in stacks])


QA_CLEAR_LAND, QA_CLEAR_WATER, QA_CLOUD = 21824, 21952, 22280
"""Landsat Collection 2 QA_PIXEL words: clear land, clear water, cloud (high confidence)."""


def product_masks(folder: Path, kind: str, factor: int = 1, frames: list[str] | None = None,
                  masks: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Masks of a product `kind` (``scl``, ``qa_pixel``, ``fmask``) around the real clouds of the
    sample (its binary masks; or `frames` and `masks` given), every clear pixel classed from its
    frame's value (water when dark, vegetation / not vegetated in SCL). Fmask masks get a no-data
    (255) top row. With `factor` > 1 they are written with pixels `factor` times larger, a coarse
    pixel cloudy when any frame pixel under it is (the extent is the same). Returns the paths
    and the clear pixels (T, H, W) the masks mean on the frames' grid."""
    if frames is None or masks is None:
        frames = sorted(str(p) for p in SAMPLE.glob("frame_*.tif"))
        masks = sorted(str(p) for p in SAMPLE.glob("mask_*.tif"))
    folder.mkdir(parents=True, exist_ok=True)
    paths, clear_masks = [], []
    for index, (frame_path, mask_path) in enumerate(zip(frames, masks), start=1):
        dataset = gdal.Open(frame_path)
        values = dataset.GetRasterBand(1).ReadAsArray().astype(np.float64)
        cloud = gdal.Open(mask_path).ReadAsArray() == 0
        height, width = cloud.shape
        if factor > 1:
            cloud = cloud.reshape(height // factor, factor, width // factor, factor).any(axis=(1, 3))
            values = values.reshape(height // factor, factor, width // factor, factor).mean(axis=(1, 3))
        water = values < 400
        if kind == "scl":
            codes = np.where(cloud, 9, np.where(water, 6, np.where(values > 1500, 4, 5)))
        elif kind == "qa_pixel":
            codes = np.where(cloud, QA_CLOUD, np.where(water, QA_CLEAR_WATER, QA_CLEAR_LAND))
        else:
            codes = np.where(cloud, 4, water.astype(int))
            codes[0] = 255
        clear = ~cloud & (codes != 255)
        if factor > 1:
            clear = np.repeat(np.repeat(clear, factor, axis=0), factor, axis=1)
        x0, dx, rx, y0, ry, dy = dataset.GetGeoTransform()
        paths.append(str(make_raster(folder / f"{kind}_{index:02d}.tif", codes,
                                     gdal.GDT_UInt16 if kind == "qa_pixel" else gdal.GDT_Byte,
                                     geotransform=(x0, dx * factor, rx, y0, ry, dy * factor),
                                     wkt=dataset.GetProjection())))
        clear_masks.append(clear)
    return paths, np.stack(clear_masks)
