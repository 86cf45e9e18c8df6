"""A time series of frames (and masks) of one scene: opened and checked as one stack, read window
by window, the fully cloudy frames dropped and the clearest kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence, TypeVar

import numpy as np

from .. import SCALE
from ..errors import MisrError
from .bands import BandSource, open_band, warp_band
from .masks import MaskOptions, MaskReader, count_values, merge_notes, resolve_kinds
from .gdal_utils import gdal_cache_limit
from .grid import Grid
from .writer import BLOCK_SIZE

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
    mask: "MaskReader | None" = None
    bands: tuple[BandSource, ...] = ()
    """Every band read of the frame when several are (``frame`` is the first), else ()."""

    def band_view(self, index: int) -> "FrameSource":
        """This frame reading its band number `index` (0-based among `bands`) with the same mask."""
        return FrameSource(self.bands[index], self.mask, self.bands) if self.bands else self

    def read_rows(self, row0: int, row1: int, col0: int = 0,
                  col1: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Values (0 where not clear) and the clear mask of a window.

        A pixel is clear when its mask says so (if there is a mask: `MaskReader`), it is not the
        frame's nodata value (a warped frame's nodata and outside are NaN), and it is finite.
        """
        values = self.frame.read_rows(row0, row1, col0, col1)
        valid = np.isfinite(values)
        if self.frame.nodata is not None:
            valid &= values != np.float32(self.frame.nodata)
        if self.mask is not None:
            valid &= self.mask.read_clear(row0, row1, col0, col1)
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
    notes: list[str] = field(default_factory=list)
    """What people should know that is not a problem (mask kinds detected, masks resampled)."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T, H, W)."""
        return len(self.sources), self.grid.height, self.grid.width

    @property
    def band_count(self) -> int:
        """How many bands of every frame were opened (`band` reads each)."""
        return max(1, len(self.sources[0].bands))

    def band(self, index: int) -> "LazyStack":
        """The same frames, masks and selection reading band `index` (0-based among those opened)."""
        if self.band_count == 1:
            return self
        sources = [source.band_view(index) for source in self.sources]
        return LazyStack(sources, self.grid, list(self.paths), self.clear_fraction, sources[0].frame.nodata,
                         list(self.warnings), list(self.notes))

    @property
    def first_bands(self) -> tuple[BandSource, ...]:
        """The bands opened of the first frame (the reference, never resampled)."""
        return self.sources[0].bands or (self.sources[0].frame,)

    @property
    def value_range(self) -> tuple[float, float] | None:
        """The range every frame's integer data type can hold (None if one is floating-point)."""
        ranges = [source.frame.value_range for source in self.sources]
        if not ranges or any(r is None for r in ranges):
            return None
        return min(r[0] for r in ranges), max(r[1] for r in ranges)

    def read_rows(self, row0: int, row1: int, col0: int = 0,
                  col1: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frames (T, rows, cols) float32 (0 where not clear) and clear masks of a window."""
        pairs = [source.read_rows(row0, row1, col0, col1) for source in self.sources]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def subset(self, keep: np.ndarray, warnings: Sequence[str] = ()) -> "LazyStack":
        """The frames `keep` (indices or booleans), with `warnings` added."""
        index = _indices(keep)
        return LazyStack([self.sources[i] for i in index], self.grid, [self.paths[i] for i in index],
                         self.clear_fraction[index], self.nodata, self.warnings + list(warnings), list(self.notes))

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
    return inputs + outputs * 2 * BLOCK_SIZE * grid.width * scale * 4


def row_blocks(height: int, rows: int) -> Iterator[tuple[int, int]]:
    """(row0, row1) windows of at most `rows` rows covering [0, height)."""
    for row0 in range(0, height, max(1, rows)):
        yield row0, min(height, row0 + max(1, rows))


def _indices(keep: np.ndarray) -> np.ndarray:
    """Frame indices from indices or a boolean selection."""
    keep = np.asarray(keep)
    return np.flatnonzero(keep) if keep.dtype == bool else keep.astype(int)


def open_stack(frame_paths: Sequence[str], mask_paths: Sequence[str] | None = None,
               band: int | None = None, align: bool = False, mask_options: MaskOptions = MaskOptions(),
               bands: Sequence[int] | None = None) -> LazyStack:
    """Open frames (and optional masks) of one scene, check they share one grid: a `LazyStack`.

    Every file is opened and checked (bands, data type, grid) before any pixel is read. With
    `align`, frames and masks off the first frame's grid are warped onto it through GDAL VRTs
    (frames bilinear, masks nearest; window by window) instead of being refused. A mask that
    covers its frame with pixels an integer multiple of the frame's (a 20 m SCL beside 10 m
    bands) is read onto the frame's grid by nearest neighbour, with a note. Masks are read as
    `mask_options` say (their kind, detected from their values for ``auto``: ``masks.py``).
    A pixel is clear when its mask says so (if masks are given), it is not the frame's
    nodata value, and it is finite. The clear fractions are counted in one pass over row
    blocks; fully cloudy frames are dropped with a warning. `bands` (1-based) opens several
    bands of every frame (`LazyStack.band` reads one of them); the first is `band`'s stand-in.
    """
    if not frame_paths:
        raise MisrError("no frames given")
    if mask_paths and len(mask_paths) != len(frame_paths):
        raise MisrError(f"{len(mask_paths)} masks given for {len(frame_paths)} frames: "
                        "give one mask per frame, in the same order")
    mask_options.check()
    band_numbers = list(bands) if bands else [band]
    frames = [[open_band(path, number, "frame") for number in band_numbers] for path in frame_paths]
    masks = [open_band(path, None, "mask") for path in mask_paths or []]
    reference = frames[0][0].grid
    off_grid = [_off_grid(source[0], reference, frames[0][0].path, align) for source in frames]
    sources = [FrameSource(*_on_grid(frame, reference, moved)) for frame, moved in zip(frames, off_grid)]
    mask_bands, notes, moved_masks = _masks_on_grid(masks, [f[0] for f in frames], reference, align)
    with gdal_cache_limit(sum(mask.cache_bytes() for mask in masks) or None):
        counts = [count_values(mask) for mask in masks]
    kinds, kind_notes = resolve_kinds([m.path for m in masks],
                                      [mask_options.kind_of(i, len(masks)) for i in range(len(masks))], counts)
    for source, mask_band, kind in zip(sources, mask_bands, kinds):
        source.mask = MaskReader(mask_band, kind, mask_options.snow, mask_options.dark_areas, mask_options.dilation)
    warnings = []
    if any(off_grid) or moved_masks:
        warnings.append(f"--align: {sum(off_grid)} frame(s) and {moved_masks} "
                        f"mask(s) resampled onto the grid of {frames[0][0].path}")
    with gdal_cache_limit(stream_cache_bytes(sources, reference)):
        clear = clear_fractions(sources, reference)
    stack = LazyStack(sources, reference, list(frame_paths), clear, frames[0][0].nodata, warnings,
                      kind_notes + notes)
    return drop_cloudy_frames(stack)


def _on_grid(bands: list[BandSource], grid: Grid, moved: bool) -> tuple[BandSource, None, tuple[BandSource, ...]]:
    """(first band, no mask yet, every band) of one frame, warped onto `grid` when `moved`."""
    bands = [warp_band(b, grid, "bilinear") if moved else b for b in bands]
    return bands[0], None, tuple(bands) if len(bands) > 1 else ()


def _masks_on_grid(masks: list[BandSource], frames: list[BandSource], reference: Grid,
                   align: bool) -> tuple[list[BandSource], list[str], int]:
    """Every mask on the grid it is read on (its frame's; the first frame's with `align`), the
    notes about coarser masks read by nearest neighbour, and how many `--align` resampled."""
    on_grid, notes, aligned = [], [], 0
    for mask, frame in zip(masks, frames):
        target = reference if align else frame.grid
        factor = mask.grid.coarser_factor(target) if target.mismatch(mask.grid) else None
        if factor:
            on_grid.append(warp_band(mask, target, "near"))
            notes.append(f"{mask.path}: pixels {factor}x larger than the frame's, read onto the frame's grid "
                         "by nearest neighbour")
            continue
        moved = _off_grid(mask, target, frame.path, align, frame)
        on_grid.append(warp_band(mask, reference, "near") if moved else mask)
        aligned += moved
    return on_grid, merge_notes(notes), aligned


def read_stack(frame_paths: Sequence[str], mask_paths: Sequence[str] | None = None,
               band: int | None = None, align: bool = False, mask_options: MaskOptions = MaskOptions()) -> Stack:
    """`open_stack`, then every pixel read into memory (see there)."""
    return open_stack(frame_paths, mask_paths, band, align, mask_options).load()


def clear_fractions(sources: Sequence[FrameSource], grid: Grid) -> np.ndarray:
    """Fraction of clear pixels of every frame, read in blocks of READ_BLOCK_ROWS rows."""
    counts = np.zeros(len(sources), np.int64)
    for row0, row1 in row_blocks(grid.height, READ_BLOCK_ROWS):
        for index, source in enumerate(sources):
            counts[index] += int(np.count_nonzero(source.read_rows(row0, row1)[1]))
    return counts / (grid.width * grid.height)


def clear_fractions_of(stack: AnyStack) -> np.ndarray:
    """Fraction of clear pixels of every frame of any stack (its `read_rows`), in row blocks."""
    count, height, width = stack.shape
    counts = np.zeros(count, np.int64)
    with gdal_cache_limit(stack.cache_bytes()):
        for row0, row1 in row_blocks(height, READ_BLOCK_ROWS):
            counts += stack.read_rows(row0, row1)[1].reshape(count, -1).sum(axis=1)
    return counts / (width * height)


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
