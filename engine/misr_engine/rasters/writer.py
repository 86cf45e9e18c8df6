"""The engine's one GeoTIFF writer: float32, tiled, DEFLATE-compressed, NaN nodata, filled by
consecutive row strips (so a large output is never held whole in memory)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

import numpy as np
from osgeo import gdal

from ..errors import MisrError
from .bands import Units
from .gdal_utils import gdal_reason, quiet_gdal
from .grid import Grid

gdal.UseExceptions()

BLOCK_SIZE = 256
"""Pixels per side of the output's internal tiles."""
GEOTIFF_OPTIONS = ["TILED=YES", f"BLOCKXSIZE={BLOCK_SIZE}", f"BLOCKYSIZE={BLOCK_SIZE}", "COMPRESS=DEFLATE",
                   "PREDICTOR=3", "BIGTIFF=IF_SAFER"]


GEOTIFF_EXTENSIONS = ("tif", "tiff")


def check_geotiff_name(path: str) -> None:
    """Refuse an output name with another raster format's extension (`sr.png`): the engine writes
    GeoTIFFs whatever the name, and a GeoTIFF called .png misleads every program that opens it.
    A .tif/.tiff name, no extension, or one that no GDAL driver claims passes."""
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if not extension or extension in GEOTIFF_EXTENSIONS:
        return
    owner = _extension_owners().get(extension)
    if owner:
        raise MisrError(f"{path}: .{extension} is the extension of {owner} files, but the outputs are "
                        "GeoTIFFs: give a .tif name")


@lru_cache(maxsize=1)
def _extension_owners() -> dict[str, str]:
    """File extension -> the long name of the GDAL raster driver that claims it."""
    owners: dict[str, str] = {}
    for index in range(gdal.GetDriverCount()):
        driver = gdal.GetDriver(index)
        if driver.GetMetadataItem(gdal.DCAP_RASTER) != "YES":
            continue
        for extension in (driver.GetMetadataItem(gdal.DMD_EXTENSIONS) or "").split():
            owners.setdefault(extension.lower().lstrip("."), driver.LongName)
    return owners


class StripWriter:
    """A float32 GeoTIFF of `bands` bands with the engine's creation options and NaN nodata,
    each band filled by consecutive row strips (bands one after the other, or interleaved).
    Rows are buffered to whole block rows, so each compressed block is written once (a
    multi-band file is band-interleaved for that). GDAL failures (disk full...) are one-line
    MisrErrors naming `label` (default: `path`). `description` is one string per band (or one
    for a single band); `colours`, GDAL colour interpretations per band, and `units`, the scale
    and offset each band declares, are optional."""

    def __init__(self, path: str, grid: Grid, tags: dict[str, object] | None = None,
                 description: str | Sequence[str] = "", label: str | None = None, bands: int = 1,
                 colours: Sequence[int] | None = None, units: Sequence[Units] | None = None):
        self.path, self.label = path, label or path
        descriptions = [description] * bands if isinstance(description, str) else list(description)
        options = GEOTIFF_OPTIONS + (["INTERLEAVE=BAND"] if bands > 1 else [])
        self.dataset = None
        try:
            with self._errors():
                self.dataset = gdal.GetDriverByName("GTiff").Create(
                    path, grid.width, grid.height, bands, gdal.GDT_Float32, options=options)
                self.dataset.SetGeoTransform(grid.geotransform)
                if grid.crs_wkt:
                    self.dataset.SetProjection(grid.crs_wkt)
                if tags:
                    self.dataset.SetMetadata({k: str(v) for k, v in tags.items()})
                for number in range(1, bands + 1):
                    band = self.dataset.GetRasterBand(number)
                    band.SetNoDataValue(float("nan"))
                    if descriptions[number - 1]:
                        band.SetDescription(descriptions[number - 1])
                    if colours and colours[number - 1] not in (gdal.GCI_Undefined, gdal.GCI_GrayIndex):
                        band.SetColorInterpretation(colours[number - 1])
                    if units and units[number - 1].declared:
                        band.SetScale(units[number - 1].scale)
                        band.SetOffset(units[number - 1].offset)
                    band = None
                self.block_rows = self.dataset.GetRasterBand(1).GetBlockSize()[1]
        except BaseException:
            self.release()
            raise
        self.height = grid.height
        self.next_row = [0] * bands  # per band: the first row not written yet
        self.pending: list[list[np.ndarray]] = [[] for _ in range(bands)]

    def write(self, row0: int, rows: np.ndarray, band: int = 1) -> None:
        """Add rows `row0` to `row0 + len(rows)` of `band`; its strips must come in order, without gaps."""
        pending = self.pending[band - 1]
        if row0 != self.next_row[band - 1] + sum(len(p) for p in pending):
            raise ValueError(f"strip at row {row0} of band {band} is not the next one")
        pending.append(np.asarray(rows, np.float32))
        buffered = sum(len(p) for p in pending)
        if buffered >= self.block_rows:
            self._flush(band, buffered - buffered % self.block_rows)

    def close(self, tags: dict[str, object] | None = None) -> None:
        """Write the remaining rows, add `tags` to the file's, and close it."""
        for band, pending in enumerate(self.pending, start=1):
            if pending:
                self._flush(band, sum(len(p) for p in pending))
        for band, next_row in enumerate(self.next_row, start=1):
            if next_row != self.height:
                raise ValueError(f"{next_row} of {self.height} rows of band {band} written")
        with self._errors():
            for key, value in (tags or {}).items():
                self.dataset.SetMetadataItem(key, str(value))
            self.dataset.FlushCache()
        failures = self._drop()  # closing writes the file's last blocks and directory
        if failures:
            raise write_error(self.label, self.path, failures[0])

    def release(self) -> None:
        """Drop the GDAL handles (closes the file), ignoring errors: after a failure, the caller
        removes the file."""
        self._drop()

    def _drop(self) -> list[BaseException]:
        """Close the file; GDAL's errors while closing (raised in a destructor, which Python
        would print as 'Exception ignored ... Traceback') are returned instead."""
        failures: list[BaseException] = []
        previous = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: failures.append(unraisable.exc_value)
        try:
            with quiet_gdal():
                self.dataset = None
        finally:
            sys.unraisablehook = previous
        return failures

    def _flush(self, band: int, count: int) -> None:
        rows = np.concatenate(self.pending[band - 1])
        with self._errors():
            self.dataset.GetRasterBand(band).WriteArray(rows[:count], 0, self.next_row[band - 1])
        self.next_row[band - 1] += count
        self.pending[band - 1] = [rows[count:]] if count < len(rows) else []

    def _errors(self) -> gdal_write_errors:
        return gdal_write_errors(self.label, self.path)


class gdal_write_errors:
    """GDAL quiet inside; its RuntimeError/OSError become a one-line MisrError naming `label`.

    A class rather than a generator: the frames of GDAL's failed call must not stay referenced
    from the new error's traceback, or the dataset they hold would close (and fail again, as a
    printed 'Exception ignored' traceback) only when the error is gone.
    """

    def __init__(self, label: str, path: str):
        self.label, self.path = label, path

    def __enter__(self) -> None:
        gdal.PushErrorHandler("CPLQuietErrorHandler")

    def __exit__(self, kind: type | None, value: BaseException | None, traceback: object) -> bool:
        gdal.PopErrorHandler()
        if not isinstance(value, (RuntimeError, OSError)):
            return False
        error = write_error(self.label, self.path, value)
        value.__traceback__ = traceback = None
        raise error from None


DISK_FULL_FREE = 16 * 2 ** 20
"""A write that fails with less than this many bytes left on the file system is put down to a full disk."""


def write_error(label: str, path: str, exc: BaseException) -> MisrError:
    """The one-line error of a failed write: 'disk full' when it is (ENOSPC, or almost no space left)."""
    reason = gdal_reason(exc, path)
    try:
        status = os.statvfs(os.path.dirname(os.path.abspath(path)))
        free = status.f_bavail * status.f_frsize
    except OSError:
        free = None
    if "No space left" in reason or (free is not None and free < DISK_FULL_FREE):
        where = os.path.dirname(os.path.abspath(label))
        left = f"; {free / 2 ** 20:.1f} MB free there now" if free is not None else ""
        return MisrError(f"{label}: cannot write: disk full in {where} (no space left on device{left}); "
                         "no output written")
    return MisrError(f"{label}: cannot write ({reason})")


def write_strips(strips: Iterable, paths: Sequence[str], grid: Grid, tags: Sequence[dict[str, object]],
                 descriptions: Sequence[str | Sequence[str]], labels: Sequence[str] | None = None,
                 bands: int = 1, colours: Sequence[int] | None = None,
                 units: Sequence[Units] | None = None,
                 closing_tags: Callable[[], dict[str, object]] | None = None) -> None:
    """Write each strip's SR to paths[0] and, when given, its uncertainty (Laplace scale) to paths[1].

    With `bands` > 1 each strip says its band (``strip.band``, 1-based) and both files get that
    many bands; `descriptions` then holds one list per file, `colours` those of the SR bands.
    `units`, per band, the frames' declared scale and offset: the SR declares them, the
    uncertainty (a spread of numbers) the scale alone. `closing_tags`: tags known only once every
    strip is made (which frames were used), added to both files before they close."""
    spreads = [Units(u.scale, 0.0) for u in units] if units else None
    writers: list[StripWriter] = []
    try:
        for index, path in enumerate(paths):
            writers.append(StripWriter(path, grid, tags[index], descriptions[index],
                                       labels[index] if labels else None, bands,
                                       colours if index == 0 else None, units if index == 0 else spreads))
        for strip in strips:
            band = getattr(strip, "band", 1)
            writers[0].write(strip.row0, strip.sr, band)
            if len(writers) > 1:
                writers[1].write(strip.row0, strip.scale, band)
        for writer in writers:
            writer.close(closing_tags() if closing_tags else None)
    finally:
        for writer in writers:  # after an error: release the files (the caller removes them)
            writer.release()


def write_geotiff(path: str, image: np.ndarray, grid: Grid, tags: dict[str, object] | None = None,
                  description: str = "", label: str | None = None) -> None:
    """Write a whole (H, W) image as one `StripWriter` strip."""
    writer = StripWriter(path, grid, tags, description, label)
    try:
        writer.write(0, image)
        writer.close()
    finally:
        writer.release()
