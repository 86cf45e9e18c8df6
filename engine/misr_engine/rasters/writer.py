"""The engine's one GeoTIFF writer: float32, tiled, DEFLATE-compressed, NaN nodata, filled by
consecutive row strips (so a large output is never held whole in memory)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import ContextManager, Iterable, Iterator, Sequence

import numpy as np
from osgeo import gdal

from ..errors import MisrError
from .gdal_utils import gdal_reason, quiet_gdal
from .grid import Grid

gdal.UseExceptions()

BLOCK_SIZE = 256
"""Pixels per side of the output's internal tiles."""
GEOTIFF_OPTIONS = ["TILED=YES", f"BLOCKXSIZE={BLOCK_SIZE}", f"BLOCKYSIZE={BLOCK_SIZE}", "COMPRESS=DEFLATE",
                   "PREDICTOR=3", "BIGTIFF=IF_SAFER"]


class StripWriter:
    """A float32 single-band GeoTIFF with the engine's creation options and NaN nodata, filled
    by consecutive row strips. Rows are buffered to whole block rows, so each compressed block
    is written once. GDAL failures (disk full...) are one-line MisrErrors naming `label`
    (default: `path`)."""

    def __init__(self, path: str, grid: Grid, tags: dict[str, object] | None = None,
                 description: str = "", label: str | None = None):
        self.path, self.label = path, label or path
        with self._errors():
            self.dataset = gdal.GetDriverByName("GTiff").Create(
                path, grid.width, grid.height, 1, gdal.GDT_Float32, options=GEOTIFF_OPTIONS)
            self.dataset.SetGeoTransform(grid.geotransform)
            if grid.crs_wkt:
                self.dataset.SetProjection(grid.crs_wkt)
            if tags:
                self.dataset.SetMetadata({k: str(v) for k, v in tags.items()})
            self.band = self.dataset.GetRasterBand(1)
            self.band.SetNoDataValue(float("nan"))
            if description:
                self.band.SetDescription(description)
            self.block_rows = self.band.GetBlockSize()[1]
        self.height = grid.height
        self.next_row = 0  # first row not written yet
        self.pending: list[np.ndarray] = []

    def write(self, row0: int, rows: np.ndarray) -> None:
        """Add rows `row0` to `row0 + len(rows)`; strips must come in order, without gaps."""
        if row0 != self.next_row + sum(len(p) for p in self.pending):
            raise ValueError(f"strip at row {row0} is not the next one")
        self.pending.append(np.asarray(rows, np.float32))
        buffered = sum(len(p) for p in self.pending)
        if buffered >= self.block_rows:
            self._flush(buffered - buffered % self.block_rows)

    def close(self) -> None:
        """Write the remaining rows and close the file."""
        if self.pending:
            self._flush(sum(len(p) for p in self.pending))
        if self.next_row != self.height:
            raise ValueError(f"{self.next_row} of {self.height} rows written")
        with self._errors():
            self.dataset.FlushCache()
            self.release()

    def release(self) -> None:
        """Drop the GDAL handles (closes the file)."""
        self.band = self.dataset = None

    def _flush(self, count: int) -> None:
        rows = np.concatenate(self.pending)
        with self._errors():
            self.band.WriteArray(rows[:count], 0, self.next_row)
        self.next_row += count
        self.pending = [rows[count:]] if count < len(rows) else []

    def _errors(self) -> ContextManager[None]:
        return gdal_write_errors(self.label, self.path)


@contextmanager
def gdal_write_errors(label: str, path: str) -> Iterator[None]:
    """GDAL quiet inside; its RuntimeError/OSError become a one-line MisrError naming `label`."""
    try:
        with quiet_gdal():
            yield
    except (RuntimeError, OSError) as exc:
        raise MisrError(f"{label}: cannot write ({gdal_reason(exc, path)})") from None


def write_strips(strips: Iterable, paths: Sequence[str], grid: Grid, tags: Sequence[dict[str, object]],
                 descriptions: Sequence[str], labels: Sequence[str] | None = None) -> None:
    """Write each strip's SR to paths[0] and, when given, its uncertainty (Laplace scale) to paths[1]."""
    writers: list[StripWriter] = []
    try:
        for index, path in enumerate(paths):
            writers.append(StripWriter(path, grid, tags[index], descriptions[index],
                                       labels[index] if labels else None))
        for strip in strips:
            writers[0].write(strip.row0, strip.sr)
            if len(writers) > 1:
                writers[1].write(strip.row0, strip.scale)
        for writer in writers:
            writer.close()
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
