"""A time series of frames (and masks) of one scene: opened and checked as one stack, read window
by window, the fully cloudy frames dropped and the clearest kept."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterator, Sequence, TypeVar

import numpy as np

from .. import SCALE
from ..errors import MisrError
from ..files import ensure_open_files
from .bands import BandSource, open_band, warp_band
from .gdal_utils import bounded_cache, gdal_cache_limit
from .grid import Grid
from .selection import clearest_selection, cloudy_selection, duplicate_selection, unique_inputs
from .writer import BLOCK_SIZE

VALUE_LIMIT = 1e30
"""Frame values this large are not data: +-3.4e38 (float32's extremes) is a common undeclared
nodata value, and such values would overflow the arithmetic. They count as not clear."""
DEFAULT_MAX_FRAMES = 15
"""At most this many (the clearest) frames are super-resolved together."""


AnyStack = TypeVar("AnyStack", "Stack", "LazyStack")


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
        nodata value (a warped frame's nodata and outside are NaN), and it is finite and within
        +-VALUE_LIMIT.
        """
        values = self.frame.read_rows(row0, row1, col0, col1)
        valid = np.abs(values) < VALUE_LIMIT  # NaN, Inf and float32 extremes are not clear
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

def stream_cache_bytes(sources: Sequence[FrameSource], grid: Grid, outputs: int = 2,
                       scale: int = SCALE) -> int:
    """GDAL block cache for streaming: two block rows of every input band and of `outputs`
    float32 outputs `scale` times finer. It grows with the width, never with the height."""
    inputs = sum(band.cache_bytes() for source in sources for band in (source.frame, source.mask) if band)
    return inputs + output_cache_bytes(grid, outputs, scale)


def output_cache_bytes(grid: Grid, outputs: int = 2, scale: int = SCALE) -> int:
    """GDAL block cache for two block rows of `outputs` float32 outputs `scale` times finer than `grid`."""
    return outputs * 2 * BLOCK_SIZE * grid.width * scale * 4


def row_blocks(height: int, rows: int) -> Iterator[tuple[int, int]]:
    """(row0, row1) windows of at most `rows` rows covering [0, height)."""
    for row0 in range(0, height, max(1, rows)):
        yield row0, min(height, row0 + max(1, rows))


def _indices(keep: np.ndarray) -> np.ndarray:
    """Frame indices from indices or a boolean selection."""
    keep = np.asarray(keep)
    return np.flatnonzero(keep) if keep.dtype == bool else keep.astype(int)


@dataclass
class StackPlan:
    """Every frame and mask of a run with its header checked (bands, data type, grid), none held
    open: what `open_planned` streams through. Made by `plan_stack`."""

    frames: list[str]
    masks: list[str] | None
    band: int | None
    grid: Grid
    nodata: float | None  # the first frame's
    warp: list[tuple[bool, bool]]  # per frame: whether --align warps the frame, its mask
    cache: list[int]  # per frame: GDAL block cache to stream it and its mask (`BandSource.cache_bytes`)
    warnings: list[str] = field(default_factory=list)

    def cache_bytes(self, frames: int, outputs: int = 2) -> int:
        """GDAL's block cache while streaming `frames` of these frames and `outputs` outputs (at most)."""
        inputs = sum(sorted(self.cache, reverse=True)[:frames])
        return bounded_cache(inputs + output_cache_bytes(self.grid, outputs))

    @property
    def rotated(self) -> bool:
        """Whether the grid is rotated (--align then warps whole frames into memory)."""
        return bool(self.grid.geotransform[2] or self.grid.geotransform[4])

    def open(self, index: int) -> FrameSource:
        """Frame `index` and its mask opened (and warped onto the grid if needed)."""
        warp_frame, warp_mask = self.warp[index]
        frame = open_band(self.frames[index], self.band, "frame")
        source = FrameSource(warp_band(frame, self.grid, "bilinear") if warp_frame else frame)
        if self.masks:
            mask = open_band(self.masks[index], None, "mask")
            source.mask = warp_band(mask, self.grid, "near") if warp_mask else mask
        return source


def plan_stack(frame_paths: Sequence[str], mask_paths: Sequence[str] | None = None,
               band: int | None = None, align: bool = False) -> StackPlan:
    """Check every frame's and mask's header, one file open at a time: a `StackPlan`.

    Bands, data type and grid are checked before any pixel is read. Without `align`, a frame off
    the first frame's grid, or a mask off its frame's, is refused; with it, they are marked to be
    warped onto the first frame's grid (frames bilinear, masks nearest; window by window). A file
    given more than once (by any name: links count) is kept once, with a warning.
    """
    if not frame_paths:
        raise MisrError("no frames given")
    if mask_paths and len(mask_paths) != len(frame_paths):
        raise MisrError(f"{len(mask_paths)} masks given for {len(frame_paths)} frames: "
                        "give one mask per frame, in the same order")
    keep, warnings = unique_inputs(frame_paths, mask_paths)
    frame_paths = [frame_paths[i] for i in keep]
    mask_paths = [mask_paths[i] for i in keep] if mask_paths else None
    reference, nodata, warp, cache = None, None, [], []
    for index, path in enumerate(frame_paths):  # one frame and its mask open at a time
        frame = open_band(path, band, "frame")
        if reference is None:
            reference, nodata = frame.grid, frame.nodata
        moved = _off_grid(frame, reference, frame_paths[0], align)
        moved_mask, cache_bytes = False, frame.cache_bytes()
        if mask_paths:
            mask = open_band(mask_paths[index], None, "mask")
            moved_mask = _off_grid(mask, reference if align else frame.grid, frame.path, align, frame)
            cache_bytes += mask.cache_bytes()
        warp.append((moved, moved_mask))
        cache.append(cache_bytes)
    if any(any(pair) for pair in warp):
        warnings.append(f"--align: {sum(f for f, _ in warp)} frame(s) and {sum(m for _, m in warp)} "
                        f"mask(s) resampled onto the grid of {frame_paths[0]}")
    return StackPlan(list(frame_paths), mask_paths, band, reference, nodata, warp, cache, warnings)


def open_stack(frame_paths: Sequence[str], mask_paths: Sequence[str] | None = None,
               band: int | None = None, align: bool = False, max_frames: int | None = None) -> LazyStack:
    """Open frames (and optional masks) of one scene, check they share one grid: a `LazyStack`.

    `plan_stack` checks every header (see there), then `open_planned` reads the pixels: fully
    cloudy and duplicate frames are dropped, the `max_frames` clearest (default: all) kept.
    A pixel is clear when its mask is nonzero (if masks are given), it is not the frame's
    nodata value, and it is finite and within +-VALUE_LIMIT.
    """
    return open_planned(plan_stack(frame_paths, mask_paths, band, align), max_frames)


def open_planned(plan: StackPlan, max_frames: int | None = None) -> LazyStack:
    """The planned frames' pixels counted and hashed one file at a time (`scan_frame`), then
    fully cloudy frames and frames identical to another dropped, the `max_frames` clearest
    (default: all) kept, each with a warning; only those are opened: a `LazyStack`."""
    grid, counts, digests = plan.grid, [], []
    for index in range(len(plan.frames)):
        source = plan.open(index)
        with gdal_cache_limit(stream_cache_bytes([source], grid)):
            count, digest = scan_frame(source, grid)
        counts.append(count)
        digests.append(digest)
        del source  # closes its files: a thousand frames never hold a thousand files open
    clear = np.asarray(counts) / (grid.width * grid.height)
    paths, warnings = list(plan.frames), list(plan.warnings)
    keep, said = cloudy_selection(paths, clear)
    keep = np.flatnonzero(keep)
    warnings += said
    unique, said = duplicate_selection([paths[i] for i in keep], [digests[i] for i in keep])
    keep = keep[unique]
    warnings += said
    clearest, said = clearest_selection([paths[i] for i in keep], clear[keep], max_frames or len(keep))
    keep = keep[clearest]
    warnings += said
    ensure_open_files(2 * len(keep))
    return LazyStack([plan.open(int(i)) for i in keep], grid, [paths[i] for i in keep], clear[keep],
                     plan.nodata, warnings)


def read_stack(frame_paths: Sequence[str], mask_paths: Sequence[str] | None = None,
               band: int | None = None, align: bool = False) -> Stack:
    """`open_stack`, then every pixel read into memory (see there)."""
    return open_stack(frame_paths, mask_paths, band, align).load()


def scan_frame(source: FrameSource, grid: Grid) -> tuple[int, bytes]:
    """The number of clear pixels of a frame and a digest of its values and clear mask, read in
    blocks of READ_BLOCK_ROWS rows."""
    count, digest = 0, hashlib.blake2b(digest_size=16)
    for row0, row1 in row_blocks(grid.height, READ_BLOCK_ROWS):
        values, clear = source.read_rows(row0, row1)
        count += int(np.count_nonzero(clear))
        digest.update(values.tobytes())
        digest.update(np.packbits(clear).tobytes())
    return count, digest.digest()


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


def drop_cloudy_frames(stack: AnyStack) -> AnyStack:
    """Remove frames with no clear pixel, warning about each; fail if none is left."""
    keep, warnings = cloudy_selection(stack.paths, stack.clear_fraction)
    return stack.subset(keep, warnings)


def select_frames(stack: AnyStack, max_frames: int = DEFAULT_MAX_FRAMES) -> tuple[AnyStack, list[str]]:
    """Keep the `max_frames` clearest frames (in their original order); warn about the rest."""
    if len(stack.paths) <= max_frames:
        return stack, []
    keep, warnings = clearest_selection(stack.paths, stack.clear_fraction, max_frames)
    return stack.subset(keep), warnings
