"""The georeferencing of a raster and the one check that two rasters share a grid."""

from __future__ import annotations

from dataclasses import dataclass

from osgeo import gdal, osr

gdal.UseExceptions()

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


def _same_crs(a: str, b: str) -> bool:
    if a == b:
        return True
    if not a or not b:
        return False
    sa, sb = osr.SpatialReference(), osr.SpatialReference()
    sa.ImportFromWkt(a)
    sb.ImportFromWkt(b)
    return bool(sa.IsSame(sb))


def grid_of(dataset: gdal.Dataset) -> Grid:
    return Grid(dataset.GetProjection() or "", tuple(dataset.GetGeoTransform()),
                dataset.RasterXSize, dataset.RasterYSize)
