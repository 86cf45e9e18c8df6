"""Reading a multi-temporal stack with GDAL, checking its grid, and writing outputs safely."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence, TypeVar

import numpy as np
from osgeo import gdal, osr

from . import SCALE
from .errors import MisrError

gdal.UseExceptions()

SUPPORTED_DTYPES = {
    getattr(gdal, name) for name in ("GDT_Byte", "GDT_Int8", "GDT_UInt16", "GDT_Int16", "GDT_UInt32",
                                     "GDT_Int32", "GDT_UInt64", "GDT_Int64", "GDT_Float32", "GDT_Float64")
    if hasattr(gdal, name)  # Int8 from GDAL 3.7, 64-bit integers from 3.5
}
GEOTIFF_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE",
                   "PREDICTOR=3", "BIGTIFF=IF_SAFER"]
GEOTRANSFORM_TOLERANCE = 1e-6  # relative to the pixel size
DEFAULT_MAX_FRAMES = 15
"""At most this many (the clearest) frames are super-resolved together."""
AnyStack = TypeVar("AnyStack", "Stack", "LazyStack")


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
    """A time series of co-registered single-band frames and their clear-sky masks, in memory.

    It offers the interface of `LazyStack` (shape, clear_fraction, read_rows, subset), so the
    streamed inference runs on either.
    """

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
    def shape(self) -> tuple[int, int, int]:
        """(T, H, W)."""
        return tuple(self.frames.shape)

    @property
    def clear_fraction(self) -> np.ndarray:
        return self.masks.reshape(len(self.masks), -1).mean(axis=1)

    def read_rows(self, row0: int, row1: int, col0: int = 0,
                  col1: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frames (T, rows, cols) float32 (0 where not clear) and clear masks of a window."""
        window = (slice(None), slice(row0, row1), slice(col0, col1))
        return self.frames[window], self.masks[window]

    def subset(self, keep: np.ndarray, warnings: Sequence[str] = ()) -> "Stack":
        """The frames `keep` (indices or booleans), with `warnings` added."""
        index = _indices(keep)
        return Stack(self.frames[index], self.masks[index], self.grid, [self.paths[i] for i in index],
                     self.nodata, self.warnings + list(warnings))

    def load(self) -> "Stack":
        """This stack (already in memory)."""
        return self

    def cache_bytes(self) -> int | None:
        """No bound on GDAL's block cache: nothing is read from files."""
        return None


@dataclass
class FrameSource:
    """One frame and its optional mask, opened and checked, readable window by window on the
    stack's grid (warped there through a GDAL VRT when `--align` found them off it)."""

    frame: "BandSource"
    mask: "BandSource | None" = None

    def read_rows(self, row0: int, row1: int, col0: int = 0,
                  col1: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Values (0 where not clear) and the clear mask of a window.

        A pixel is clear when its mask is nonzero (if there is a mask), it is not the frame's
        nodata value (a warped frame's nodata and outside are NaN), and it is finite.
        """
        values = self.frame.read_rows(row0, row1, col0, col1)
        valid = np.isfinite(values)
        if self.frame.nodata is not None:
            valid &= values != np.float32(self.frame.nodata)
        if self.mask is not None:
            mask_values = self.mask.read_rows(row0, row1, col0, col1)
            valid &= np.isfinite(mask_values) & (mask_values != 0)
        return np.where(valid, values, 0).astype(np.float32), valid


@dataclass
class LazyStack:
    """The frames (and masks) of one scene, every file opened and checked, read only window by
    window (`read_rows`): its memory does not grow with the raster. Made by `open_stack`."""

    sources: list[FrameSource]
    grid: Grid
    paths: list[str]
    clear_fraction: np.ndarray  # (T,) fraction of clear pixels per frame
    nodata: float | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T, H, W)."""
        return len(self.sources), self.grid.height, self.grid.width

    def read_rows(self, row0: int, row1: int, col0: int = 0,
                  col1: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frames (T, rows, cols) float32 (0 where not clear) and clear masks of a window."""
        pairs = [source.read_rows(row0, row1, col0, col1) for source in self.sources]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def subset(self, keep: np.ndarray, warnings: Sequence[str] = ()) -> "LazyStack":
        """The frames `keep` (indices or booleans), with `warnings` added."""
        index = _indices(keep)
        return LazyStack([self.sources[i] for i in index], self.grid, [self.paths[i] for i in index],
                         self.clear_fraction[index], self.nodata, self.warnings + list(warnings))

    def cache_bytes(self) -> int:
        """Enough of GDAL's block cache to stream this stack and its x3 outputs (see `stream_cache_bytes`)."""
        return stream_cache_bytes(self.sources, self.grid)

    def load(self) -> Stack:
        """Every pixel read into an in-memory `Stack`."""
        frames, masks = self.read_rows(0, self.grid.height)
        return Stack(frames, masks, self.grid, list(self.paths), self.nodata, list(self.warnings))


READ_BLOCK_ROWS = 64
"""Rows per window when a pass reads a whole raster (the clear fractions)."""
CACHE_ROWS = 128
"""GDAL's block cache keeps at least twice this many rows of every input while streaming."""
OUTPUT_BLOCK_ROWS = 256  # BLOCKYSIZE of GEOTIFF_OPTIONS


def stream_cache_bytes(sources: Sequence[FrameSource], grid: Grid, outputs: int = 2,
                       scale: int = SCALE) -> int:
    """GDAL block cache for streaming: two block rows of every input band and of `outputs`
    float32 outputs `scale` times finer. It grows with the width, never with the height."""
    inputs = sum(band.cache_bytes() for source in sources for band in (source.frame, source.mask) if band)
    return inputs + outputs * 2 * OUTPUT_BLOCK_ROWS * grid.width * scale * 4


@contextmanager
def gdal_cache_limit(size: int | None) -> Iterator[None]:
    """GDAL's block cache bounded to `size` bytes inside the block, then restored.

    GDAL keeps every block read or written in a process-wide cache of up to GDAL_CACHEMAX (5% of
    the RAM by default); streamed through it, a large raster would fill it. Nothing changes with
    `size` None, when the user set GDAL_CACHEMAX, or when the cache is already smaller.
    """
    previous = gdal.GetCacheMax()
    if size is None or os.environ.get("GDAL_CACHEMAX") or size >= previous:
        yield
        return
    gdal.SetCacheMax(int(size))
    try:
        yield
    finally:
        gdal.SetCacheMax(previous)


def row_blocks(height: int, rows: int) -> Iterator[tuple[int, int]]:
    """(row0, row1) windows of at most `rows` rows covering [0, height)."""
    for row0 in range(0, height, max(1, rows)):
        yield row0, min(height, row0 + max(1, rows))


def _indices(keep: np.ndarray) -> np.ndarray:
    """Frame indices from indices or a boolean selection."""
    keep = np.asarray(keep)
    return np.flatnonzero(keep) if keep.dtype == bool else keep.astype(int)


def _same_crs(a: str, b: str) -> bool:
    if a == b:
        return True
    if not a or not b:
        return False
    sa, sb = osr.SpatialReference(), osr.SpatialReference()
    sa.ImportFromWkt(a)
    sb.ImportFromWkt(b)
    return bool(sa.IsSame(sb))


@contextmanager
def quiet_gdal() -> Iterator[None]:
    """Silence GDAL's own stderr messages (warnings about damaged files); errors still raise."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        yield
    finally:
        gdal.PopErrorHandler()


def open_raster(path: str | os.PathLike) -> gdal.Dataset:
    """Open a raster with GDAL, or raise a one-line MisrError naming the file."""
    path = str(path)
    if not os.path.exists(path):
        raise MisrError(f"{path}: file not found")
    if os.path.isdir(path):
        raise MisrError(f"{path}: is a directory, not a raster")
    if not os.access(path, os.R_OK):
        raise MisrError(f"{path}: permission denied")
    try:
        with quiet_gdal():
            dataset = gdal.Open(path, gdal.GA_ReadOnly)
    except RuntimeError as exc:
        raise MisrError(f"{path}: not a readable raster ({_gdal_reason(exc, path)})") from None
    if dataset is None or dataset.RasterCount == 0:
        raise MisrError(f"{path}: not a raster")
    return dataset


def grid_of(dataset: gdal.Dataset) -> Grid:
    return Grid(dataset.GetProjection() or "", tuple(dataset.GetGeoTransform()),
                dataset.RasterXSize, dataset.RasterYSize)


@dataclass
class BandSource:
    """One band of an opened raster, checked (band number, data type, georeferencing), not read yet."""

    path: str
    dataset: gdal.Dataset
    band: int
    grid: Grid
    nodata: float | None
    keep: object = None  # what a warped VRT reads from: kept alive with it

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
                            f"({_gdal_reason(exc, self.path)})") from None
        except MemoryError:
            raise MisrError(f"{self.path}: {shape[1]}x{shape[0]} pixels do not fit in memory") from None
        if data is None or data.shape != shape:
            raise MisrError(f"{self.path}: corrupt or unreadable pixel data")
        return data.astype(np.float32, copy=False)


def open_band(path: str, band: int | None = None, kind: str = "raster") -> BandSource:
    """Open `path` and check its band (1-based; None: it must have one band) and data type.

    `kind` ("raster", "frame" or "mask") only words the messages: --band applies to frames.
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
        raise MisrError(f"{path}: corrupt georeferencing ({_gdal_reason(exc, path)})") from None
    x0, dx, rx, y0, ry, dy = grid.geotransform
    if not all(np.isfinite(grid.geotransform)) or dx * dy - rx * ry == 0:
        raise MisrError(f"{path}: corrupt georeferencing (geotransform {grid.geotransform})")
    return BandSource(str(path), dataset, band, grid, nodata)


def read_band(path: str, band: int | None = None) -> tuple[np.ndarray, Grid, float | None]:
    """Read one band as float32 with its grid and nodata value.

    `band` is 1-based; None means the raster must have exactly one band.
    """
    source = open_band(path, band)
    return source.read(), source.grid, source.nodata


def open_stack(frame_paths: Sequence[str], mask_paths: Sequence[str] | None = None,
               band: int | None = None, align: bool = False) -> LazyStack:
    """Open frames (and optional masks) of one scene, check they share one grid: a `LazyStack`.

    Every file is opened and checked (bands, data type, grid) before any pixel is read. With
    `align`, frames and masks off the first frame's grid are warped onto it through GDAL VRTs
    (frames bilinear, masks nearest; window by window) instead of being refused.
    A pixel is clear when its mask is nonzero (if masks are given), it is not the frame's
    nodata value, and it is finite. The clear fractions are counted in one pass over row
    blocks; fully cloudy frames are dropped with a warning.
    """
    if not frame_paths:
        raise MisrError("no frames given")
    if mask_paths and len(mask_paths) != len(frame_paths):
        raise MisrError(f"{len(mask_paths)} masks given for {len(frame_paths)} frames: "
                        "give one mask per frame, in the same order")
    frames = [open_band(path, band, "frame") for path in frame_paths]
    masks = [open_band(path, None, "mask") for path in mask_paths or []]
    reference = frames[0].grid
    off_grid = [_off_grid(source, reference, frames[0].path, align) for source in frames]
    off_grid += [_off_grid(mask, reference if align else frame.grid, frame.path, align, frame)
                 for mask, frame in zip(masks, frames)]
    sources = [FrameSource(warp_band(frame, reference, "bilinear") if moved else frame)
               for frame, moved in zip(frames, off_grid)]
    for source, mask, moved in zip(sources, masks, off_grid[len(frames):]):
        source.mask = warp_band(mask, reference, "near") if moved else mask
    warnings = []
    if any(off_grid):
        warnings.append(f"--align: {sum(off_grid[:len(frames)])} frame(s) and {sum(off_grid[len(frames):])} "
                        f"mask(s) resampled onto the grid of {frames[0].path}")
    with gdal_cache_limit(stream_cache_bytes(sources, reference)):
        clear = clear_fractions(sources, reference)
    stack = LazyStack(sources, reference, list(frame_paths), clear, frames[0].nodata, warnings)
    return drop_cloudy_frames(stack)


def read_stack(frame_paths: Sequence[str], mask_paths: Sequence[str] | None = None,
               band: int | None = None, align: bool = False) -> Stack:
    """`open_stack`, then every pixel read into memory (see there)."""
    return open_stack(frame_paths, mask_paths, band, align).load()


def clear_fractions(sources: Sequence[FrameSource], grid: Grid) -> np.ndarray:
    """Fraction of clear pixels of every frame, read in blocks of READ_BLOCK_ROWS rows."""
    counts = np.zeros(len(sources), np.int64)
    for row0, row1 in row_blocks(grid.height, READ_BLOCK_ROWS):
        for index, source in enumerate(sources):
            counts[index] += int(np.count_nonzero(source.read_rows(row0, row1)[1]))
    return counts / (grid.width * grid.height)


def _off_grid(source: BandSource, grid: Grid, grid_path: str, align: bool,
              frame: BandSource | None = None) -> bool:
    """Whether `source` must be warped onto `grid` (only with `align`; otherwise a MisrError)."""
    why = grid.mismatch(source.grid)
    if why is None:
        return False
    if not align:
        if frame is not None:
            raise MisrError(f"{source.path}: mask not on the grid of its frame {frame.path} ({why}); "
                            "pass --align to resample it")
        raise MisrError(f"{source.path}: not on the grid of {grid_path} ({why}); "
                        "pass --align to resample it onto that grid")
    if bool(grid.crs_wkt) != bool(source.grid.crs_wkt):
        raise MisrError(f"{source.path}: cannot --align it onto {grid_path}: only one of them has a CRS")
    return True


def warp_band(source: BandSource, grid: Grid, resampling: str) -> BandSource:
    """`source` resampled onto `grid` on the fly (a warped GDAL VRT, read window by window):
    float32, NaN = nodata or outside the source.

    Frames use `resampling` "bilinear" (nodata honoured, NaN outside); masks "near" (their
    nodata ignored, 0 = not clear outside). A rotated `grid` is warped into memory instead (a
    VRT's output bounds cannot express it).
    """
    is_mask = resampling == "near"
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
                        f"({_gdal_reason(exc, source.path)})") from None
    except MemoryError:
        raise MisrError(f"{source.path}: {grid.width}x{grid.height} pixels do not fit in memory") from None
    return BandSource(source.path, target, 1, grid, None if is_mask else float("nan"), keep=(single, source))


def _memory_raster(grid: Grid) -> gdal.Dataset:
    """An empty float32 in-memory raster on `grid`."""
    target = gdal.GetDriverByName("MEM").Create("", grid.width, grid.height, 1, gdal.GDT_Float32)
    target.SetGeoTransform(grid.geotransform)
    if grid.crs_wkt:
        target.SetProjection(grid.crs_wkt)
    return target


def drop_cloudy_frames(stack: AnyStack) -> AnyStack:
    """Remove frames with no clear pixel, warning about each; fail if none is left."""
    keep = stack.clear_fraction > 0
    if not keep.any():
        raise MisrError("every frame is fully cloudy or nodata: nothing to super-resolve "
                        f"({', '.join(stack.paths)})")
    warnings = [f"{p}: fully cloudy or nodata, dropped" for p, k in zip(stack.paths, keep) if not k]
    return stack.subset(keep, warnings)


def select_frames(stack: AnyStack, max_frames: int = DEFAULT_MAX_FRAMES) -> tuple[AnyStack, list[str]]:
    """Keep the `max_frames` clearest frames (in their original order); warn about the rest."""
    if len(stack.paths) <= max_frames:
        return stack, []
    order = np.argsort(-stack.clear_fraction, kind="stable")
    keep = np.sort(order[:max_frames])
    dropped = [stack.paths[i] for i in sorted(order[max_frames:])]
    warning = f"{len(dropped)} frame(s) beyond the {max_frames} clearest not used: {', '.join(dropped)}"
    return stack.subset(keep), [warning]


def check_output_path(path: str, inputs: Sequence[str], overwrite: bool) -> None:
    """Refuse an output in a missing or unwritable directory, equal to an input, a directory,
    or existing without overwrite."""
    target = Path(path).resolve()
    if not target.parent.is_dir():
        raise MisrError(f"{path}: output directory {target.parent} does not exist")
    if target.is_dir():
        raise MisrError(f"{path}: is a directory; give an output file name")
    if any(target == Path(p).resolve() or _same_file(target, p) for p in inputs):
        raise MisrError(f"{path}: output would overwrite an input file")
    if target.exists() and not overwrite:
        raise MisrError(f"{path}: already exists (use --overwrite to replace it)")
    try:  # the only portable test that the directory is writable: write there
        handle, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=target.parent)
        os.close(handle)
        os.remove(probe)
    except OSError as exc:
        raise MisrError(f"{path}: cannot write in {target.parent} ({exc.strerror or exc})") from None


def _same_file(target: Path, other: str) -> bool:
    try:
        return target.exists() and os.path.samefile(target, other)
    except OSError:
        return False


SIDECARS = (".aux.xml", ".ovr")
"""GDAL files beside a raster that describe it (statistics, overviews): stale once it is replaced."""


@contextmanager
def atomic_outputs(paths: Sequence[str]) -> Iterator[list[str]]:
    """Yield temporary paths beside `paths`; move them all onto `paths` only if the block succeeds.

    On failure or interruption no temporary file remains and existing files are untouched.
    The moves happen together at the end with SIGINT/SIGTERM deferred; if one fails, the
    outputs already moved are rolled back to the files they replaced.
    """
    targets = [Path(p).resolve() for p in paths]
    temporaries: list[str] = []
    try:
        for target in targets:
            handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial.tif",
                                                 dir=target.parent)
            os.close(handle)
            temporaries.append(temporary)
        yield list(temporaries)
        with _signals_deferred():
            _commit(temporaries, targets)
    finally:
        with _signals_deferred():
            for temporary in temporaries:
                for leftover in (temporary, temporary + ".aux.xml"):
                    if os.path.exists(leftover):
                        os.remove(leftover)


@contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds."""
    with atomic_outputs([path]) as (temporary,):
        yield temporary


def _commit(temporaries: Sequence[str], targets: Sequence[Path]) -> None:
    """Move each temporary onto its target, keeping the old targets until all moves succeed."""
    mode = 0o666 & ~_umask()
    backups: list[list] = []  # [backup path, target, whether the backup now holds the old target]
    moved: list[Path] = []
    current = targets[0] if targets else None
    try:
        for temporary, current in zip(temporaries, targets):
            os.chmod(temporary, mode)  # mkstemp makes files private; outputs get the usual mode
            if current.exists():
                handle, backup = tempfile.mkstemp(prefix=f".{current.name}.", suffix=".old",
                                                  dir=current.parent)
                os.close(handle)
                backups.append([backup, current, False])
                os.replace(current, backup)
                backups[-1][2] = True
            os.replace(temporary, current)
            moved.append(current)
    except BaseException as exc:
        for target in moved:
            os.remove(target)
        for backup, target, holding in backups:
            if holding:
                os.replace(backup, target)
            else:
                os.remove(backup)
        if isinstance(exc, OSError):
            raise MisrError(f"{current}: cannot replace it ({exc.strerror or exc}); "
                            "existing files kept") from None
        raise
    for backup, _, _ in backups:
        os.remove(backup)
    for target in moved:
        for sidecar in SIDECARS:
            if os.path.isfile(str(target) + sidecar):
                os.remove(str(target) + sidecar)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    with ExitStack() as restore:
        for number in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(number, lambda signum, frame: received.append(signum))
            restore.callback(signal.signal, number, previous)
        yield
    for signum in received[:1]:
        handler = signal.getsignal(signum)
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)


def write_geotiff(path: str, image: np.ndarray, grid: Grid, tags: dict[str, str] | None = None,
                  description: str = "", label: str | None = None) -> None:
    """Write a float32 single-band tiled, compressed GeoTIFF with NaN as nodata.

    A failure (disk full...) is a one-line MisrError naming `label` (default: `path`).
    """
    try:
        with quiet_gdal():
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
            dataset = band = None
    except (RuntimeError, OSError) as exc:
        raise MisrError(f"{label or path}: cannot write ({_gdal_reason(exc, path)})") from None


def _gdal_reason(exc: BaseException, path: str) -> str:
    """GDAL's message for `exc` without the file name it repeats (the caller names the file)."""
    text = _first_line(exc)
    for noise in (f"`{path}'", f"{path}:", f"{path},"):
        text = text.replace(noise, "")
    return text.replace(path, "the file").strip(" :,.") or exc.__class__.__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__
