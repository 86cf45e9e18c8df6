"""The grid check the engine applies to frames and masks, for checking before a run.

The engine (``misr_engine``'s ``Grid.mismatch``) calls two rasters on one grid when they have the
same size, CRSs that GDAL's ``osr.SpatialReference.IsSame`` calls the same (or neither has one)
and geotransforms whose six coefficients agree within 1e-6 of the first raster's pixel size.
:func:`mismatches` decides exactly that, from the same GDAL reading of the files (``read_grid``),
and says in words what differs. tests/plugin/test_grid_agreement.py holds both to the same cases.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

RELATIVE_TOLERANCE = 1e-6
"""Geotransform coefficients may differ by this fraction of a pixel (the engine's tolerance)."""

GeoTransform = Tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class Grid:
    """A raster's georeferencing as GDAL reads it: CRS (WKT or an authority id such as
    ``EPSG:32633``; '' = none), geotransform and size."""

    crs: str
    geotransform: GeoTransform
    width: int
    height: int

    @property
    def pixel_size(self) -> Tuple[float, float]:
        return abs(self.geotransform[1]), abs(self.geotransform[5])

    @property
    def extent(self) -> Tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of a north-up grid (rotation terms ignored)."""
        x0, dx, _rx, y0, _ry, dy = self.geotransform
        xs, ys = (x0, x0 + dx * self.width), (y0, y0 + dy * self.height)
        return min(xs), min(ys), max(xs), max(ys)

    @classmethod
    def north_up(cls, crs: str, extent: Tuple[float, float, float, float],
                 pixel_size: Tuple[float, float], width: int, height: int) -> "Grid":
        """The grid of a north-up raster with this extent and pixel size."""
        xmin, _ymin, _xmax, ymax = extent
        return cls(crs, (xmin, pixel_size[0], 0.0, ymax, 0.0, -pixel_size[1]), width, height)


def read_grid(path: str) -> Optional[Grid]:
    """The grid of the raster file at `path` as the engine reads it, or None when GDAL cannot
    open it. Cached while the file is unchanged (the dialog checks on every change)."""
    try:
        stamp = os.stat(path).st_mtime_ns if not path.startswith("/vsi") else 0
    except OSError:
        return None
    return _read_grid(path, stamp)


@lru_cache(maxsize=256)
def _read_grid(path: str, _stamp: int) -> Optional[Grid]:
    from osgeo import gdal

    previous = gdal.GetUseExceptions()
    gdal.UseExceptions()
    try:
        dataset = gdal.Open(path)
        return Grid(dataset.GetProjection() or "", tuple(dataset.GetGeoTransform()),
                    dataset.RasterXSize, dataset.RasterYSize)
    except RuntimeError:
        return None
    finally:
        if not previous:
            gdal.DontUseExceptions()


@lru_cache(maxsize=1024)
def same_crs(a: str, b: str) -> bool:
    """Whether two CRSs (WKT or authority ids) are the same for GDAL (``IsSame``); two
    missing CRSs are the same, one missing is not."""
    if a == b:
        return True
    if not a or not b:
        return False
    from osgeo import osr

    first, second = osr.SpatialReference(), osr.SpatialReference()
    try:
        if first.SetFromUserInput(a) != 0 or second.SetFromUserInput(b) != 0:
            return False
    except RuntimeError:  # with osr exceptions on, an unreadable CRS raises
        return False
    return bool(first.IsSame(second))


def mismatches(reference: Grid, other: Grid, crs_names: Tuple[str, str] = ("", "")) -> List[str]:
    """How `other` is off `reference`'s grid, in words ([] when the engine accepts it).

    The decision is the engine's (see the module docstring); the words say which of CRS, size,
    pixel size, orientation and extent differ. `crs_names` (reference's, other's) are shown for
    the CRSs instead of their WKT.
    """
    problems = []
    if not same_crs(reference.crs, other.crs):
        ref_name, other_name = (name or _short_crs(crs) for name, crs in
                                zip(crs_names, (reference.crs, other.crs)))
        same_name = " (same name, other definition)" if other_name == ref_name else ""
        problems.append(f"CRS {other_name} differs from {ref_name}{same_name}")
    resized = (reference.width, reference.height) != (other.width, other.height)
    if resized:
        problems.append(f"size {other.width}x{other.height} differs from "
                        f"{reference.width}x{reference.height}")
    tolerance = RELATIVE_TOLERANCE * max(reference.pixel_size)

    def differ(a: Sequence[float], b: Sequence[float]) -> bool:
        return any(abs(x - y) > tolerance for x, y in zip(a, b))

    ref_gt, other_gt = reference.geotransform, other.geotransform
    if not resized and not differ(ref_gt, other_gt):
        return problems
    details = []
    if differ(reference.pixel_size, other.pixel_size):
        details.append(f"pixel size {_pair(other.pixel_size)} differs from {_pair(reference.pixel_size)}")
    elif differ(ref_gt[1:3] + ref_gt[4:], other_gt[1:3] + other_gt[4:]):
        details.append(f"orientation (geotransform {_numbers(other_gt)}) differs from {_numbers(ref_gt)}")
    if differ(reference.extent, other.extent):
        details.append(f"extent {_numbers(other.extent)} differs from {_numbers(reference.extent)}")
    if not details and differ(ref_gt, other_gt):
        details.append(f"geotransform {_numbers(other_gt)} differs from {_numbers(ref_gt)}")
    return problems + details


def offset_of(reference: Grid, other: Grid) -> Optional[Tuple[int, int]]:
    """(columns, rows) by which `other`'s origin lies off `reference`'s when both are north-up
    with the same CRS and pixel size and `other`'s pixels fall on `reference`'s (another footprint
    on the same pixel grid): the engine then reads it as it is, no --align needed (its
    ``Grid.offset_of``); else None."""
    x0, dx, rx, y0, ry, dy = reference.geotransform
    ox0, odx, orx, oy0, ory, ody = other.geotransform
    tolerance = RELATIVE_TOLERANCE * max(reference.pixel_size)
    if rx or ry or orx or ory or abs(dx - odx) > tolerance or abs(dy - ody) > tolerance \
            or not same_crs(reference.crs, other.crs):
        return None
    cols, rows = (ox0 - x0) / dx, (oy0 - y0) / dy
    if abs(cols - round(cols)) * abs(dx) > tolerance or abs(rows - round(rows)) * abs(dy) > tolerance:
        return None
    return round(cols), round(rows)


def offset_words(cols: int, rows: int) -> str:
    """Where a raster `cols` columns and `rows` rows off another's origin starts: "2 columns left
    of and 1 row below" (or "at"), before "the first pixel of ..." (the engine's words, its
    ``rasters.stack.offset_words``)."""
    def count(number: int, unit: str) -> str:
        return f"{abs(number)} {unit}{'' if abs(number) == 1 else 's'}"
    parts = ([f"{count(cols, 'column')} {'right of' if cols > 0 else 'left of'}"] if cols else []) + \
        ([f"{count(rows, 'row')} {'below' if rows > 0 else 'above'}"] if rows else [])
    return " and ".join(parts) or "at"


def covered_share(reference: Grid, other: Grid, offset: Tuple[int, int]) -> float:
    """The share of `reference`'s pixels that `other`, `offset` (columns, rows) off it, covers."""
    cols = max(0, min(reference.width, offset[0] + other.width) - max(0, offset[0]))
    rows = max(0, min(reference.height, offset[1] + other.height) - max(0, offset[1]))
    return cols * rows / (reference.width * reference.height)


def coarser_factor(coarse: Grid, fine: Grid) -> Optional[int]:
    """k when `coarse` covers `fine`'s extent with pixels exactly k >= 2 times larger, in the same
    CRS, both north-up: the engine then reads such a mask onto its frame's grid by nearest
    neighbour (the engine's ``Grid.coarser_factor``); else None."""
    x0, dx, rx, y0, ry, dy = coarse.geotransform
    fx0, fdx, frx, fy0, fry, fdy = fine.geotransform
    if rx or ry or frx or fry or dx * fdx <= 0 or dy * fdy <= 0 or not same_crs(coarse.crs, fine.crs):
        return None
    factor = round(dx / fdx)
    if factor < 2 or any(abs(size / fine_size - factor) > RELATIVE_TOLERANCE * factor
                         for size, fine_size in ((dx, fdx), (dy, fdy))):
        return None
    tolerance = RELATIVE_TOLERANCE * max(coarse.pixel_size)
    outer, inner = coarse.extent, fine.extent
    covers = (outer[0] <= inner[0] + tolerance and outer[1] <= inner[1] + tolerance
              and inner[2] <= outer[2] + tolerance and inner[3] <= outer[3] + tolerance)
    return factor if covers else None


def _short_crs(crs: str) -> str:
    """An authority id for a WKT when GDAL finds one, else the start of the WKT."""
    if not crs:
        return "unknown"
    from osgeo import osr

    srs = osr.SpatialReference()
    try:
        srs.SetFromUserInput(crs)
        srs.AutoIdentifyEPSG()
    except RuntimeError:
        pass
    name, code = srs.GetAuthorityName(None), srs.GetAuthorityCode(None)
    return f"{name}:{code}" if name and code else crs[:40]


def _pair(pair: Sequence[float]) -> str:
    return f"{pair[0]:.6g} x {pair[1]:.6g}"


def _numbers(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.10g}" for v in values) + ")"
