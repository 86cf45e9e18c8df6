"""Opening one band of a raster with GDAL, checked, and reading it window by window (or warped
onto another grid)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from osgeo import gdal

from ..errors import MisrError
from ..files import check_input_file
from .gdal_utils import gdal_reason, quiet_gdal
from .grid import Grid, Window, grid_of

gdal.UseExceptions()

SUPPORTED_DTYPES = {
    getattr(gdal, name) for name in ("GDT_Byte", "GDT_Int8", "GDT_UInt16", "GDT_Int16", "GDT_UInt32",
                                     "GDT_Int32", "GDT_UInt64", "GDT_Int64", "GDT_Float32", "GDT_Float64")
    if hasattr(gdal, name)  # Int8 from GDAL 3.7, 64-bit integers from 3.5
}
CACHE_ROWS = 128
"""GDAL's block cache keeps at least twice this many rows of every input while streaming."""


def open_raster(path: str | os.PathLike) -> gdal.Dataset:
    """Open a raster with GDAL, or raise a one-line MisrError naming the file."""
    path = str(path)
    check_input_file(path, "raster")  # before GDAL: opening a FIFO would block
    try:
        with quiet_gdal():
            dataset = gdal.Open(path, gdal.GA_ReadOnly)
    except RuntimeError as exc:
        raise MisrError(f"{path}: not a readable raster ({gdal_reason(exc, path)})") from None
    if dataset is None or dataset.RasterCount == 0:
        raise MisrError(f"{path}: not a raster")
    _check_member_files(path, dataset)
    return dataset


def _check_member_files(path: str, dataset: gdal.Dataset) -> None:
    """The other files a dataset reads (a VRT's sources, sidecars) are regular files too: GDAL
    opens them only when pixels are read, and a FIFO or a device there would block or never end."""
    try:
        with quiet_gdal():
            members = dataset.GetFileList() or []
    except RuntimeError:  # damaged georeferencing keys surface here: the grid check names them
        return
    for member in members[1:]:
        if not member.startswith("/vsi") and os.path.lexists(member):
            try:
                check_input_file(member, "raster")
            except MisrError as exc:
                raise MisrError(f"{path}: reads {exc}") from None


@dataclass(frozen=True)
class Units:
    """What a band's numbers mean, as GDAL's band scale and offset declare it: the physical value
    is scale x number + offset (Sentinel-2 L2A from baseline 04.00: 0.0001 and -0.1)."""

    scale: float = 1.0
    offset: float = 0.0

    @classmethod
    def of(cls, band: gdal.Band) -> Units:
        """The band's declared scale and offset (1 and 0 where it declares none)."""
        return cls(band.GetScale() or 1.0, band.GetOffset() or 0.0)

    @property
    def declared(self) -> bool:
        return (self.scale, self.offset) != (1.0, 0.0)

    def to(self, other: Units) -> tuple[float, float]:
        """(a, b): a number in these units is a x number + b in `other`'s."""
        return self.scale / other.scale, (self.offset - other.offset) / other.scale

    def __str__(self) -> str:
        return f"scale {self.scale:g}, offset {self.offset:g}"


@dataclass
class BandSource:
    """One band of an opened raster, checked (band number, data type, georeferencing), not read yet."""

    path: str
    dataset: gdal.Dataset
    band: int
    grid: Grid
    nodata: float | None
    keep: object = None  # what a warped VRT reads from: kept alive with it
    value_range: tuple[float, float] | None = None  # of the file's integer data type (None: float)
    units: Units = Units()
    rescale: tuple[float, float] | None = None
    """(a, b) that bring this band's numbers into the stack's units (a x number + b; `in_units`),
    or None when they are the stack's already."""

    def in_units(self, units: Units) -> BandSource:
        """This band read in `units` (its numbers and value range converted; see `Units.to`)."""
        if units == self.units:
            return self
        a, b = self.units.to(units)
        limits = None if self.value_range is None else tuple(sorted(a * v + b for v in self.value_range))
        return replace(self, rescale=(a, b), value_range=limits)

    def cache_bytes(self) -> int:
        """Bytes of GDAL's block cache that keep two rows of this band's blocks (or CACHE_ROWS rows)."""
        band = self.dataset.GetRasterBand(self.band)
        rows = 2 * max(band.GetBlockSize()[1], CACHE_ROWS)
        return rows * self.grid.width * max(1, gdal.GetDataTypeSize(band.DataType) // 8)

    def read(self) -> np.ndarray:
        """The whole band as float32 (see `read_rows`)."""
        return self.read_rows(0, self.grid.height)

    def read_rows(self, row0: int, row1: int, col0: int = 0, col1: int | None = None) -> np.ndarray:
        """Rows row0:row1 (columns col0:col1) as float32, or a one-line MisrError if the pixel
        data there cannot be decoded."""
        col1 = self.grid.width if col1 is None else col1
        shape = (row1 - row0, col1 - col0)
        try:
            with quiet_gdal():
                data = self.dataset.GetRasterBand(self.band).ReadAsArray(col0, row0, shape[1], shape[0])
        except RuntimeError as exc:
            raise MisrError(f"{self.path}: corrupt or unreadable pixel data "
                            f"({gdal_reason(exc, self.path)})") from None
        except MemoryError:
            raise MisrError(f"{self.path}: {shape[1]}x{shape[0]} pixels do not fit in memory") from None
        if data is None or data.shape != shape:
            raise MisrError(f"{self.path}: corrupt or unreadable pixel data")
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes +-inf: not clear
            return data.astype(np.float32, copy=False)


def open_band(path: str, band: int | None = None, kind: str = "raster", window: Window | None = None) -> BandSource:
    """Open `path` and check its band (1-based; None: it must have one band) and data type.

    `kind` ("raster", "frame" or "mask") only words the messages: --band applies to frames.
    `window`: a raster on that window's full grid is read through it (a GDAL VRT of those pixels:
    the rest of the file is never read); a raster on another grid is opened whole (the caller
    warps it onto the window's grid).
    """
    dataset = open_raster(path)
    count = dataset.RasterCount
    if band is None:
        if count != 1:
            if kind == "mask":
                raise MisrError(f"{path}: mask has {count} bands; a mask must have exactly one")
            raise MisrError(f"{path}: has {count} bands; choose one with --band")
        band = 1
    if not 1 <= band <= count:
        raise MisrError(f"{path}: --band {band} is out of range (the raster has {count} band(s))")
    data_type = dataset.GetRasterBand(band).DataType
    if data_type not in SUPPORTED_DTYPES:
        raise MisrError(f"{path}: unsupported data type {gdal.GetDataTypeName(data_type)} "
                        "(use a real-valued integer or float raster)")
    if dataset.RasterXSize < 1 or dataset.RasterYSize < 1:
        raise MisrError(f"{path}: empty raster ({dataset.RasterXSize}x{dataset.RasterYSize})")
    try:  # GDAL parses the georeferencing lazily: damaged GeoTIFF keys show up here
        with quiet_gdal():
            grid = grid_of(dataset)
            nodata = dataset.GetRasterBand(band).GetNoDataValue()
    except RuntimeError as exc:
        raise MisrError(f"{path}: corrupt georeferencing ({gdal_reason(exc, path)})") from None
    x0, dx, rx, y0, ry, dy = grid.geotransform
    if not all(np.isfinite(grid.geotransform)) or dx * dy - rx * ry == 0:
        raise MisrError(f"{path}: corrupt georeferencing (geotransform {grid.geotransform})")
    source = BandSource(str(path), dataset, band, grid, nodata, value_range=integer_range(data_type),
                        units=Units.of(dataset.GetRasterBand(band)))
    return _windowed(source, window) if window is not None and window.full.mismatch(grid) is None else source


def _windowed(source: BandSource, window: Window) -> BandSource:
    """`source` read through `window` (same path, band, nodata, units and data type)."""
    if window.whole:
        return source
    with quiet_gdal():
        part = gdal.Translate("", source.dataset, format="VRT",
                              srcWin=[window.col0, window.row0, window.width, window.height])
    return replace(source, dataset=part, grid=window.grid, keep=source.dataset)


def integer_range(data_type: int) -> tuple[float, float] | None:
    """The values a GDAL integer data type can hold (None for floating-point types)."""
    name = gdal.GetDataTypeName(data_type)
    if not name or "Float" in name:
        return None
    info = np.iinfo(np.uint8 if name == "Byte" else getattr(np, name.lower()))
    return float(info.min), float(info.max)


def parse_bands(bands: Sequence[int] | str | None) -> list[int] | str | None:
    """`bands` checked: 1-based band numbers (a list, or text such as ``1,2,3`` or ``1;2;3``: a
    batch manifest's cell), ``all``, or None (not asked); a one-line MisrError otherwise."""
    if bands is None:
        return None
    if isinstance(bands, str):
        if bands.strip().lower() == "all":
            return "all"
        try:
            bands = [int(part) for part in bands.replace(";", ",").split(",") if part.strip()]
        except ValueError:
            raise MisrError(f"--bands {bands}: give band numbers (1,2,3) or all") from None
    numbers = [int(b) for b in bands]
    if not numbers or min(numbers) < 1:
        raise MisrError(f"--bands {','.join(map(str, numbers))}: bands are numbered from 1")
    if len(set(numbers)) != len(numbers):
        raise MisrError(f"--bands {','.join(map(str, numbers))}: a band is named twice")
    return numbers


def resolve_bands(bands: Sequence[int] | str | None, first_frame: str) -> list[int] | None:
    """The 1-based band numbers `bands` names (`parse_bands`): ``all`` is every band of
    `first_frame` (None: not asked)."""
    parsed = parse_bands(bands)
    if parsed == "all":
        return list(range(1, open_raster(first_frame).RasterCount + 1))
    return parsed


def band_identity(source: BandSource) -> tuple[str, int]:
    """The band's description and GDAL colour interpretation, as its file names them."""
    band = source.dataset.GetRasterBand(source.band)
    return band.GetDescription() or "", band.GetColorInterpretation()


def read_band(path: str, band: int | None = None) -> tuple[np.ndarray, Grid, float | None]:
    """Read one band as float32 with its grid and nodata value.

    `band` is 1-based; None means the raster must have exactly one band.
    """
    source = open_band(path, band)
    return source.read(), source.grid, source.nodata


def warp_band(source: BandSource, grid: Grid, resampling: str, is_mask: bool = False) -> BandSource:
    """`source` resampled onto `grid` on the fly (a warped GDAL VRT, read window by window):
    float32, NaN = nodata or outside the source.

    Frames use `resampling` "bilinear" (--align) or "near" (whole pixels off the grid: moved,
    not resampled), nodata honoured, NaN outside; masks (`is_mask`) "near", their nodata
    ignored, 0 = not clear outside. A rotated `grid` is warped into memory instead (a VRT's
    output bounds cannot express it).
    """
    x0, dx, rx, y0, ry, dy = grid.geotransform
    try:
        with quiet_gdal():
            single = gdal.Translate("", source.dataset, format="VRT", bandList=[source.band])
            nodata = source.nodata
            options = dict(resampleAlg=resampling, srcNodata="None" if is_mask or nodata is None else nodata,
                           dstNodata=None if is_mask else float("nan"), outputType=gdal.GDT_Float32,
                           warpOptions=["INIT_DEST=0" if is_mask else "INIT_DEST=NO_DATA"])
            if rx == 0 and ry == 0:
                target = gdal.Warp("", single, options=gdal.WarpOptions(
                    format="VRT", outputBounds=(x0, y0 + dy * grid.height, x0 + dx * grid.width, y0),
                    width=grid.width, height=grid.height, dstSRS=grid.crs_wkt or None, **options))
            else:
                target = _memory_raster(grid)
                gdal.Warp(target, single, options=gdal.WarpOptions(**options))
    except RuntimeError as exc:
        raise MisrError(f"{source.path}: cannot resample it onto the first frame's grid "
                        f"({gdal_reason(exc, source.path)})") from None
    except MemoryError:
        raise MisrError(f"{source.path}: {grid.width}x{grid.height} pixels do not fit in memory") from None
    return BandSource(source.path, target, 1, grid, None if is_mask else float("nan"), keep=(single, source),
                      value_range=source.value_range, units=source.units)


def _memory_raster(grid: Grid) -> gdal.Dataset:
    """An empty float32 in-memory raster on `grid`."""
    target = gdal.GetDriverByName("MEM").Create("", grid.width, grid.height, 1, gdal.GDT_Float32)
    target.SetGeoTransform(grid.geotransform)
    if grid.crs_wkt:
        target.SetProjection(grid.crs_wkt)
    return target
