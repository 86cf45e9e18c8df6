"""Reading a multi-temporal stack with GDAL, checking its grid, and writing outputs safely."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from osgeo import gdal, osr

from .errors import MisrError

gdal.UseExceptions()

SUPPORTED_DTYPES = {
    gdal.GDT_Byte, gdal.GDT_UInt16, gdal.GDT_Int16, gdal.GDT_UInt32, gdal.GDT_Int32,
    gdal.GDT_Float32, gdal.GDT_Float64,
}
GEOTIFF_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE",
                   "PREDICTOR=3", "BIGTIFF=IF_SAFER"]
GEOTRANSFORM_TOLERANCE = 1e-6  # relative to the pixel size


@dataclass(frozen=True)
class Grid:
    """The georeferencing of a raster: CRS (WKT), geotransform and size."""

    crs_wkt: str
    geotransform: tuple[float, ...]
    width: int
    height: int

    @property
    def pixel_size(self) -> tuple[float, float]:
        return abs(self.geotransform[1]), abs(self.geotransform[5])

    def refined(self, scale: int) -> "Grid":
        """The same extent and origin with pixels `scale` times smaller."""
        x0, dx, rx, y0, ry, dy = self.geotransform
        return Grid(self.crs_wkt, (x0, dx / scale, rx / scale, y0, ry / scale, dy / scale),
                    self.width * scale, self.height * scale)

    def mismatch(self, other: "Grid") -> str | None:
        """Why `other` is not on this grid, or None when it is."""
        if (self.width, self.height) != (other.width, other.height):
            return f"size {other.width}x{other.height} differs from {self.width}x{self.height}"
        if not _same_crs(self.crs_wkt, other.crs_wkt):
            return "CRS differs"
        tol = GEOTRANSFORM_TOLERANCE * max(self.pixel_size)
        if any(abs(a - b) > tol for a, b in zip(self.geotransform, other.geotransform)):
            return f"geotransform {other.geotransform} differs from {self.geotransform}"
        return None


@dataclass
class Stack:
    """A time series of co-registered single-band frames and their clear-sky masks."""

    frames: np.ndarray  # (T, H, W) float32, NaN never present (invalid pixels are masked)
    masks: np.ndarray  # (T, H, W) bool, True = clear
    grid: Grid
    paths: list[str]
    nodata: float | None = None
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def in_memory(cls, frames: np.ndarray, masks: np.ndarray) -> "Stack":
        """A stack of arrays on a unit pixel grid without CRS (for tests and evaluation)."""
        t, height, width = frames.shape
        return cls(np.asarray(frames, np.float32), np.asarray(masks, bool),
                   Grid("", (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), width, height),
                   [f"frame {i + 1}" for i in range(t)])

    @property
    def clear_fraction(self) -> np.ndarray:
        return self.masks.reshape(len(self.masks), -1).mean(axis=1)


def _same_crs(a: str, b: str) -> bool:
    if a == b:
        return True
    if not a or not b:
        return False
    sa, sb = osr.SpatialReference(), osr.SpatialReference()
    sa.ImportFromWkt(a)
    sb.ImportFromWkt(b)
    return bool(sa.IsSame(sb))


def open_raster(path: str | os.PathLike) -> gdal.Dataset:
    """Open a raster with GDAL, or raise a one-line MisrError naming the file."""
    path = str(path)
    if not os.path.exists(path):
        raise MisrError(f"{path}: file not found")
    if os.path.isdir(path):
        raise MisrError(f"{path}: is a directory, not a raster")
    try:
        dataset = gdal.Open(path, gdal.GA_ReadOnly)
    except RuntimeError as exc:
        raise MisrError(f"{path}: not a readable raster ({_first_line(exc)})") from None
    if dataset is None or dataset.RasterCount == 0:
        raise MisrError(f"{path}: not a raster")
    return dataset


def grid_of(dataset: gdal.Dataset) -> Grid:
    return Grid(dataset.GetProjection() or "", tuple(dataset.GetGeoTransform()),
                dataset.RasterXSize, dataset.RasterYSize)


def read_band(path: str, band: int | None = None) -> tuple[np.ndarray, Grid, float | None]:
    """Read one band as float32 with its grid and nodata value.

    `band` is 1-based; None means the raster must have exactly one band.
    """
    dataset = open_raster(path)
    count = dataset.RasterCount
    if band is None:
        if count != 1:
            raise MisrError(f"{path}: has {count} bands; choose one with --band")
        band = 1
    if not 1 <= band <= count:
        raise MisrError(f"{path}: --band {band} is out of range (the raster has {count} band(s))")
    raster_band = dataset.GetRasterBand(band)
    if raster_band.DataType not in SUPPORTED_DTYPES:
        raise MisrError(f"{path}: unsupported data type {gdal.GetDataTypeName(raster_band.DataType)}")
    try:
        data = raster_band.ReadAsArray()
    except RuntimeError as exc:
        raise MisrError(f"{path}: corrupt or unreadable pixel data ({_first_line(exc)})") from None
    if data is None:
        raise MisrError(f"{path}: corrupt or unreadable pixel data")
    return data.astype(np.float32, copy=False), grid_of(dataset), raster_band.GetNoDataValue()


def read_stack(frame_paths: Sequence[str], mask_paths: Sequence[str] | None = None,
               band: int | None = None) -> Stack:
    """Read frames (and optional masks) of one scene, check they share one grid, build masks.

    A pixel is clear when its mask is nonzero (if masks are given), it is not the frame's
    nodata value, and it is finite. Fully cloudy frames are dropped with a warning.
    """
    if not frame_paths:
        raise MisrError("no frames given")
    if mask_paths and len(mask_paths) != len(frame_paths):
        raise MisrError(f"{len(mask_paths)} masks given for {len(frame_paths)} frames: "
                        "give one mask per frame, in the same order")
    frames, masks, reference, nodata = [], [], None, None
    for index, path in enumerate(frame_paths):
        data, grid, frame_nodata = read_band(path, band)
        if reference is None:
            reference, nodata = grid, frame_nodata
        elif (why := reference.mismatch(grid)) is not None:
            raise MisrError(f"{path}: not on the grid of {frame_paths[0]} ({why}); "
                            "resample it onto one grid first")
        clear = np.isfinite(data)
        if frame_nodata is not None:
            clear &= data != np.float32(frame_nodata)
        if mask_paths:
            mask, mask_grid, _ = read_band(mask_paths[index], None)
            if (why := grid.mismatch(mask_grid)) is not None:
                raise MisrError(f"{mask_paths[index]}: mask not on the grid of its frame {path} ({why})")
            clear &= mask != 0
        frames.append(np.where(clear, data, 0).astype(np.float32))
        masks.append(clear)
    stack = Stack(np.stack(frames), np.stack(masks), reference, list(frame_paths), nodata)
    return drop_cloudy_frames(stack)


def drop_cloudy_frames(stack: Stack) -> Stack:
    """Remove frames with no clear pixel, warning about each; fail if none is left."""
    keep = stack.clear_fraction > 0
    if not keep.any():
        raise MisrError("every frame is fully cloudy or nodata: nothing to super-resolve "
                        f"({', '.join(stack.paths)})")
    warnings = [f"{p}: fully cloudy or nodata, dropped" for p, k in zip(stack.paths, keep) if not k]
    return Stack(stack.frames[keep], stack.masks[keep], stack.grid,
                 [p for p, k in zip(stack.paths, keep) if k], stack.nodata, stack.warnings + warnings)


def check_output_path(path: str, inputs: Sequence[str], overwrite: bool) -> None:
    """Refuse an output in a missing directory, equal to an input, or existing without overwrite."""
    target = Path(path).resolve()
    if not target.parent.is_dir():
        raise MisrError(f"{path}: output directory {target.parent} does not exist")
    if any(target == Path(p).resolve() for p in inputs):
        raise MisrError(f"{path}: output would overwrite an input file")
    if target.exists() and not overwrite:
        raise MisrError(f"{path}: already exists (use --overwrite to replace it)")


@contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds."""
    target = Path(path).resolve()
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial.tif",
                                         dir=target.parent)
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        for leftover in (temporary, temporary + ".aux.xml"):
            if os.path.exists(leftover):
                os.remove(leftover)


def write_geotiff(path: str, image: np.ndarray, grid: Grid, tags: dict[str, str] | None = None,
                  description: str = "") -> None:
    """Write a float32 single-band tiled, compressed GeoTIFF with NaN as nodata."""
    driver = gdal.GetDriverByName("GTiff")
    dataset = driver.Create(path, grid.width, grid.height, 1, gdal.GDT_Float32,
                            options=GEOTIFF_OPTIONS)
    dataset.SetGeoTransform(grid.geotransform)
    if grid.crs_wkt:
        dataset.SetProjection(grid.crs_wkt)
    if tags:
        dataset.SetMetadata({k: str(v) for k, v in tags.items()})
    band = dataset.GetRasterBand(1)
    band.SetNoDataValue(float("nan"))
    if description:
        band.SetDescription(description)
    band.WriteArray(image.astype(np.float32, copy=False))
    dataset.FlushCache()
    dataset = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__
