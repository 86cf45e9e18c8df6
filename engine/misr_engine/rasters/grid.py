"""The georeferencing of a raster, the one check that two rasters share a grid, and the part of
a grid an area covers (`--extent`). GDAL is imported only where a CRS is compared: a grid alone (a
stack in memory, the tiled inference, training) needs none, as on a GPU machine's image without it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from osgeo import gdal

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

    def offset_of(self, other: "Grid") -> tuple[int, int] | None:
        """(columns, rows) by which `other`'s origin lies off this grid's when both are north-up
        with the same CRS and pixel size and `other`'s pixels fall on this grid's pixels (another
        footprint on the same pixel grid: Landsat scenes of one path and row); else None."""
        x0, dx, rx, y0, ry, dy = self.geotransform
        ox0, odx, orx, oy0, ory, ody = other.geotransform
        tol = GEOTRANSFORM_TOLERANCE * max(self.pixel_size)
        if rx or ry or orx or ory or abs(dx - odx) > tol or abs(dy - ody) > tol \
                or not _same_crs(self.crs_wkt, other.crs_wkt):
            return None
        cols, rows = (ox0 - x0) / dx, (oy0 - y0) / dy
        if abs(cols - round(cols)) * abs(dx) > tol or abs(rows - round(rows)) * abs(dy) > tol:
            return None
        return round(cols), round(rows)

    def covered_by(self, other: "Grid", offset: tuple[int, int]) -> float:
        """The share of this grid's pixels that `other`, `offset` (columns, rows) off it, covers."""
        cols = max(0, min(self.width, offset[0] + other.width) - max(0, offset[0]))
        rows = max(0, min(self.height, offset[1] + other.height) - max(0, offset[1]))
        return cols * rows / (self.width * self.height)

    def coarser_factor(self, fine: "Grid") -> int | None:
        """k when this grid covers `fine`'s extent with pixels exactly k >= 2 times larger, in the
        same CRS, both north-up (a 20 m SCL mask beside 10 m bands: k = 2); else None. Such a
        mask is read onto the fine grid by nearest neighbour."""
        x0, dx, rx, y0, ry, dy = self.geotransform
        fx0, fdx, frx, fy0, fry, fdy = fine.geotransform
        if rx or ry or frx or fry or dx * fdx <= 0 or dy * fdy <= 0 or not _same_crs(self.crs_wkt, fine.crs_wkt):
            return None
        factor = round(dx / fdx)
        if factor < 2 or any(abs(size / fine_size - factor) > GEOTRANSFORM_TOLERANCE * factor
                             for size, fine_size in ((dx, fdx), (dy, fdy))):
            return None
        tol = GEOTRANSFORM_TOLERANCE * max(self.pixel_size)
        covers = all(low <= fine_low + tol and fine_high <= high + tol for (low, high), (fine_low, fine_high) in (
            (sorted((x0, x0 + dx * self.width)), sorted((fx0, fx0 + fdx * fine.width))),
            (sorted((y0, y0 + dy * self.height)), sorted((fy0, fy0 + fdy * fine.height)))))
        return factor if covers else None


@dataclass(frozen=True)
class Window:
    """Whole pixels of a grid (`full`): columns col0:col0+width, rows row0:row0+height. What a run
    reads of every raster on that grid when it is given an area (`--extent`)."""

    full: Grid
    col0: int
    row0: int
    width: int
    height: int

    @property
    def grid(self) -> Grid:
        """The window's own grid (same CRS and pixel size, its own origin and size)."""
        x0, dx, rx, y0, ry, dy = self.full.geotransform
        return Grid(self.full.crs_wkt, (x0 + self.col0 * dx, dx, rx, y0 + self.row0 * dy, ry, dy),
                    self.width, self.height)

    @property
    def whole(self) -> bool:
        return (self.col0, self.row0, self.width, self.height) == (0, 0, self.full.width, self.full.height)

    def expanded(self, margin: int) -> Window:
        """This window with `margin` more pixels on every side, cut to the grid."""
        col0, row0 = max(0, self.col0 - margin), max(0, self.row0 - margin)
        col1 = min(self.full.width, self.col0 + self.width + margin)
        row1 = min(self.full.height, self.row0 + self.height + margin)
        return Window(self.full, col0, row0, col1 - col0, row1 - row0)

    def within(self, outer: Window) -> tuple[slice, slice]:
        """(rows, columns) of this window within `outer` (a window of the same grid that holds it)."""
        row0, col0 = self.row0 - outer.row0, self.col0 - outer.col0
        return slice(row0, row0 + self.height), slice(col0, col0 + self.width)


def window_of(grid: Grid, extent: tuple[float, float, float, float]) -> Window | None:
    """The pixels of a north-up `grid` that (xmin, ymin, xmax, ymax) touches, snapped outward to
    whole pixels and cut to the grid; None when it touches none."""
    x0, dx, _, y0, _, dy = grid.geotransform
    xmin, ymin, xmax, ymax = extent
    tol = GEOTRANSFORM_TOLERANCE * 100  # of a pixel: an edge on a pixel edge takes no extra pixel
    cols = sorted(((xmin - x0) / dx, (xmax - x0) / dx))
    rows = sorted(((ymin - y0) / dy, (ymax - y0) / dy))
    col0, col1 = max(0, math.floor(cols[0] + tol)), min(grid.width, math.ceil(cols[1] - tol))
    row0, row1 = max(0, math.floor(rows[0] + tol)), min(grid.height, math.ceil(rows[1] - tol))
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(grid, col0, row0, col1 - col0, row1 - row0)


def _same_crs(a: str, b: str) -> bool:
    if a == b:
        return True
    if not a or not b:
        return False
    from osgeo import osr

    sa, sb = osr.SpatialReference(), osr.SpatialReference()
    sa.ImportFromWkt(a)
    sb.ImportFromWkt(b)
    return bool(sa.IsSame(sb))


def grid_of(dataset: gdal.Dataset) -> Grid:
    return Grid(dataset.GetProjection() or "", tuple(dataset.GetGeoTransform()),
                dataset.RasterXSize, dataset.RasterYSize)
