"""A time series of frames (and masks) of one scene: opened and checked as one stack, read window
by window, the fully cloudy frames dropped and the clearest kept."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np

from .. import SCALE
from ..errors import MisrError
from ..files import ensure_open_files
from .bands import BandSource, Units, open_band, warp_band
from .gdal_utils import bounded_cache, gdal_cache_limit
from .grid import Grid, Window, window_of
from .in_memory import READ_BLOCK_ROWS, Stack, frame_indices, row_blocks
from .masks import MaskOptions, MaskReader, count_values, merge_notes, resolve_kinds
from .selection import (
    DEFAULT_MAX_FRAMES,
    clearest_selection,
    cloudy_selection,
    duplicate_selection,
    unique_inputs,
)
from .writer import BLOCK_SIZE

VALUE_LIMIT = 1e30
"""Frame values this large are not data: +-3.4e38 (float32's extremes) is a common undeclared
nodata value, and such values would overflow the arithmetic. They count as not clear."""


SomeStack = TypeVar("SomeStack", "Stack", "LazyStack")
"""Either kind of stack, returned as the kind it was given."""


@dataclass
class FrameSource:
    """One frame and its optional mask, opened and checked, readable window by window on the
    stack's grid (warped there through a GDAL VRT when `--align` found them off it)."""

    frame: BandSource
    mask: MaskReader | None = None
    bands: tuple[BandSource, ...] = ()
    """Every band read of the frame when several are (``frame`` is the first), else ()."""

    def band_view(self, index: int) -> FrameSource:
        """This frame reading its band number `index` (0-based among `bands`) with the same mask."""
        return FrameSource(self.bands[index], self.mask, self.bands) if self.bands else self

    def read_rows(self, row0: int, row1: int, col0: int = 0,
                  col1: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Values (0 where not clear) and the clear mask of a window.

        A pixel is clear when its mask says so (if there is a mask: `MaskReader`), it is not the
        frame's nodata value (a warped frame's nodata and outside are NaN), and it is finite and
        within +-VALUE_LIMIT. Values are in the stack's units (`BandSource.rescale`).
        """
        values = self.frame.read_rows(row0, row1, col0, col1)
        valid = np.abs(values) < VALUE_LIMIT  # NaN, Inf and float32 extremes are not clear
        if self.frame.nodata is not None:
            valid &= values != np.float32(self.frame.nodata)
        if self.mask is not None:
            valid &= self.mask.read_clear(row0, row1, col0, col1)
        if self.frame.rescale is not None:  # in the stack's units (`StackPlan.units`)
            a, b = self.frame.rescale
            values = values.astype(np.float64) * a + b
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
    units: tuple[Units, ...] = ()
    """Per band opened, the units every frame's values are read in (`StackPlan.units`)."""
    spares: int = 0
    """Usable frames (clear somewhere, not a duplicate) beyond the `max_frames` opened (`open_planned`)."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T, H, W)."""
        return len(self.sources), self.grid.height, self.grid.width

    @property
    def band_count(self) -> int:
        """How many bands of every frame were opened (`band` reads each)."""
        return max(1, len(self.sources[0].bands))

    def band(self, index: int) -> LazyStack:
        """The same frames, masks and selection reading band `index` (0-based among those opened)."""
        if self.band_count == 1:
            return self
        sources = [source.band_view(index) for source in self.sources]
        return LazyStack(sources, self.grid, list(self.paths), self.clear_fraction, sources[0].frame.nodata,
                         list(self.warnings), list(self.notes), self.units[index:index + 1], self.spares)

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

    def subset(self, keep: np.ndarray, warnings: Sequence[str] = ()) -> LazyStack:
        """The frames `keep` (indices or booleans), with `warnings` added."""
        index = frame_indices(keep)
        return LazyStack([self.sources[i] for i in index], self.grid, [self.paths[i] for i in index],
                         self.clear_fraction[index], self.nodata, self.warnings + list(warnings), list(self.notes),
                         self.units)

    def cache_bytes(self) -> int:
        """Enough of GDAL's block cache to stream this stack and its x3 outputs (see `stream_cache_bytes`)."""
        return stream_cache_bytes(self.sources, self.grid)

    def load(self) -> Stack:
        """Every pixel read into an in-memory `Stack`."""
        frames, masks = self.read_rows(0, self.grid.height)
        return Stack(frames, masks, self.grid, list(self.paths), self.nodata, list(self.warnings))


EXTENT_CONTEXT = 16
"""LR pixels read around an `--extent` (where the frames have them): the SR at the area's edges
sees its neighbours as in a run of the whole frames. On the sample, a 28 x 34 px area differed
from that crop of the whole run by 40 DN on average (960 at most; level 1,683) without them,
12 (133) with 16 px, 11 (113) with 64: the rest is the registration and the units of the area."""

def stream_cache_bytes(sources: Sequence[FrameSource], grid: Grid, outputs: int = 2,
                       scale: int = SCALE) -> int:
    """GDAL block cache for streaming: two block rows of every input band and of `outputs`
    float32 outputs `scale` times finer. It grows with the width, never with the height."""
    inputs = sum(band.cache_bytes() for source in sources
                 for band in (source.bands or (source.frame,)) + ((source.mask,) if source.mask else ()))
    return inputs + output_cache_bytes(grid, outputs, scale)


def output_cache_bytes(grid: Grid, outputs: int = 2, scale: int = SCALE) -> int:
    """GDAL block cache for two block rows of `outputs` float32 outputs `scale` times finer than `grid`."""
    return outputs * 2 * BLOCK_SIZE * grid.width * scale * 4


@dataclass
class StackPlan:
    """Every frame and mask of a run with its header checked (bands, data type, grid), none held
    open: what `open_planned` streams through. Made by `plan_stack`."""

    frames: list[str]
    masks: list[str] | None
    band: int | None
    grid: Grid
    nodata: float | None  # the first frame's (first band's)
    warp: list[tuple[str, bool]]
    """Per frame: how the frame is read onto the grid ("" as it is, "near" moved by whole pixels,
    "bilinear" resampled: --align) and whether its mask is moved onto it (nearest neighbour)."""
    cache: list[int]  # per frame: GDAL block cache to stream its bands and its mask (`BandSource.cache_bytes`)
    warnings: list[str] = field(default_factory=list)
    bands: list[int] = field(default_factory=list)
    """Several bands (1-based) read of every frame (`--bands`), else [] (`band` alone)."""
    mask_options: MaskOptions = MaskOptions()
    kinds: list[str] = field(default_factory=list)
    """Per mask: the kind asked (maybe ``auto``), then the kind read once `resolve_mask_kinds` ran."""
    notes: list[str] = field(default_factory=list)
    """What people should know that is not a problem (coarser masks, mask kinds detected)."""
    kinds_resolved: bool = False
    units: list[Units] = field(default_factory=list)
    """Per band read, the units every frame is read in (`stack_units`)."""
    scanned: tuple[np.ndarray, list[bytes]] | None = None
    """Every planned frame's clear fraction and digest, once `scan` counted them."""
    area: Window | None = None
    """The part of the first frame's grid asked for (`--extent`): what a run writes."""

    @property
    def window(self) -> Window | None:
        """The part of the first frame's grid read: the area and EXTENT_CONTEXT pixels around it
        (None: the whole frames)."""
        return None if self.area is None else self.area.expanded(EXTENT_CONTEXT)

    def scan(self) -> tuple[np.ndarray, list[bytes]]:
        """Every planned frame's clear fraction and digest (`scan_frame`), counted one file at a
        time, once: the frames are read again only to be super-resolved."""
        if self.scanned is None:
            counts, digests = [], []
            for index in range(len(self.frames)):
                source = self.open(index)
                with gdal_cache_limit(stream_cache_bytes([source], self.grid)):
                    count, digest = scan_frame(source, self.grid)
                counts.append(count)
                digests.append(digest)
                del source  # closes its files: a thousand frames never hold a thousand files open
            self.scanned = np.asarray(counts) / (self.grid.width * self.grid.height), digests
        return self.scanned

    @property
    def band_numbers(self) -> list[int | None]:
        """The bands read of every frame (the first stands in for a single-band run's)."""
        return list(self.bands) or [self.band]

    def cache_bytes(self, frames: int, outputs: int = 2) -> int:
        """GDAL's block cache while streaming `frames` of these frames and `outputs` outputs (at most)."""
        inputs = sum(sorted(self.cache, reverse=True)[:frames])
        return bounded_cache(inputs + output_cache_bytes(self.grid, outputs))

    @property
    def rotated(self) -> bool:
        """Whether the grid is rotated (--align then warps whole frames into memory)."""
        return bool(self.grid.geotransform[2] or self.grid.geotransform[4])

    def resolve_mask_kinds(self) -> None:
        """Every mask's kind (``masks.resolve_kinds``: ``auto`` detected from the values, an explicit
        kind checked against them), the masks' values counted one file at a time; notes added."""
        if self.kinds_resolved or not self.masks:
            return
        counts = []
        for path in self.masks:
            mask = open_band(path, None, "mask", self.window)
            with gdal_cache_limit(bounded_cache(mask.cache_bytes())):
                counts.append(count_values(mask))
            del mask  # closes it
        self.kinds, notes = resolve_kinds(self.masks, self.kinds, counts)
        self.notes += notes
        self.kinds_resolved = True

    def open(self, index: int) -> FrameSource:
        """Frame `index` (every band read) and its mask read as its kind says, opened (and warped
        onto the grid if needed: frames bilinear, masks nearest)."""
        warp_frame, warp_mask = self.warp[index]
        bands = [open_band(self.frames[index], number, "frame", self.window) for number in self.band_numbers]
        bands = [warp_band(band, self.grid, warp_frame) if warp_frame else band for band in bands]
        bands = [band.in_units(units) if band.units.declared else band for band, units in zip(bands, self.units)]
        source = FrameSource(bands[0], None, tuple(bands) if len(bands) > 1 else ())
        if self.masks:
            self.resolve_mask_kinds()
            mask = open_band(self.masks[index], None, "mask", self.window)
            options = self.mask_options
            source.mask = MaskReader(warp_band(mask, self.grid, "near", is_mask=True) if warp_mask else mask,
                                     self.kinds[index],
                                     options.snow, options.dark_areas, options.dilation)
        return source


def plan_stack(frame_paths: Sequence[str], mask_paths: Sequence[str] | None = None,
               band: int | None = None, align: bool = False, mask_options: MaskOptions = MaskOptions(),
               bands: Sequence[int] | None = None,
               extent: tuple[float, float, float, float] | None = None) -> StackPlan:
    """Check every frame's and mask's header, one file open at a time: a `StackPlan`.

    Bands, data type and grid are checked before any pixel is read. Without `align`, a frame off
    the first frame's grid, or a mask off its frame's, is refused; with it, they are marked to be
    warped onto the first frame's grid (frames bilinear, masks nearest; window by window). A mask
    that covers its frame with pixels an integer multiple of the frame's (a 20 m SCL beside 10 m
    bands) is marked to be read onto the frame's grid by nearest neighbour, with a note. Masks
    are read as `mask_options` say (their kinds are resolved from their values by
    `StackPlan.resolve_mask_kinds`). `bands` (1-based) reads several bands of every frame
    (`LazyStack.band` reads one of them). A file given more than once (by any name: links
    count) is kept once, with a warning. `extent` (xmin, ymin, xmax, ymax in the first frame's
    CRS) reads only the first frame's pixels it touches, and the same pixels of every raster on
    that grid (rasters on other grids are warped onto them, as above).
    """
    if not frame_paths:
        raise MisrError("no frames given")
    if mask_paths and len(mask_paths) != len(frame_paths):
        raise MisrError(f"{len(mask_paths)} masks given for {len(frame_paths)} frames: "
                        "give one mask per frame, in the same order")
    mask_options.check()
    asked = [mask_options.kind_of(i, len(mask_paths)) for i in range(len(mask_paths))] if mask_paths else []
    keep, warnings = unique_inputs(frame_paths, mask_paths)
    frame_paths = [frame_paths[i] for i in keep]
    mask_paths = [mask_paths[i] for i in keep] if mask_paths else None
    numbers = list(bands) if bands else [band]
    area = None if extent is None else extent_window(open_band(frame_paths[0], numbers[0], "frame").grid,
                                                     extent, frame_paths[0])
    window = None if area is None else area.expanded(EXTENT_CONTEXT)
    reference, nodata, warp, cache, notes, aligned_masks = None, None, [], [], [], 0
    headers: list[list[BandSource]] = []  # every frame's bands, closed: their declared units
    for index, path in enumerate(frame_paths):  # one frame (its bands) and its mask open at a time
        frame_bands = [open_band(path, number, "frame", window) for number in numbers]
        frame = frame_bands[0]
        if reference is None:
            reference, nodata = frame.grid, frame.nodata
        headers.append([replace(band, dataset=None) for band in frame_bands])
        moved = _placement(frame, reference, frame_paths[0], align, notes, full=area.full if area else None)
        moved_mask, cache_bytes = False, sum(b.cache_bytes() for b in frame_bands)
        if mask_paths:
            mask = open_band(mask_paths[index], None, "mask", window)
            target = reference if moved else frame.grid
            on_frame = frame.grid.mismatch(mask.grid) is None
            factor = None if on_frame else mask.grid.coarser_factor(frame.grid)
            if factor:
                moved_mask = True
                notes.append(f"{mask.path}: pixels {factor}x larger than the frame's, read onto the frame's grid "
                             "by nearest neighbour")
            elif moved and on_frame:  # on its frame's grid: moved with it
                moved_mask = True
                aligned_masks += moved == "bilinear"
            else:
                placed = _placement(mask, target, frame_paths[0], align, notes, frame, area.full if area else None)
                moved_mask = bool(placed)
                aligned_masks += placed == "bilinear"
            cache_bytes += mask.cache_bytes()
        warp.append((moved, moved_mask))
        cache.append(cache_bytes)
        del frame, frame_bands  # closes the files before the next frame's are opened
    if any(f == "bilinear" for f, _ in warp) or aligned_masks:
        warnings.append(f"--align: {sum(f == 'bilinear' for f, _ in warp)} frame(s) and {aligned_masks} "
                        f"mask(s) resampled onto the grid of {frame_paths[0]}")
    units, said = stack_units(headers)
    return StackPlan(list(frame_paths), mask_paths, band, reference, nodata, warp, cache, warnings + said[0],
                     list(bands or []), mask_options, [asked[i] for i in keep] if mask_paths else [],
                     merge_notes(notes) + said[1], units=units, area=area)


def extent_window(grid: Grid, extent: tuple[float, float, float, float], path: str) -> Window:
    """The pixels of `path` (on `grid`) that `extent` covers (``grid.window_of``), or a one-line
    MisrError when the grid is rotated or the extent misses it."""
    xmin, ymin, xmax, ymax = extent
    if grid.geotransform[2] or grid.geotransform[4]:
        raise MisrError(f"{path}: --extent needs a north-up grid (this one is rotated)")
    window = window_of(grid, extent)
    if window is None:
        x0, dx, _, y0, _, dy = grid.geotransform
        raise MisrError(f"{path}: --extent {xmin:.12g} {ymin:.12g} {xmax:.12g} {ymax:.12g} does not overlap the frame "
                        f"({min(x0, x0 + dx * grid.width):.12g} {min(y0, y0 + dy * grid.height):.12g} "
                        f"{max(x0, x0 + dx * grid.width):.12g} {max(y0, y0 + dy * grid.height):.12g}, in its CRS)")
    return window


def stack_units(frames: Sequence[Sequence[BandSource]]) -> tuple[list[Units], tuple[list[str], list[str]]]:
    """Per band, the units a stack is read in: the first declared ones (GDAL scale/offset; none
    declared: numbers as they are); and (warnings, notes): a frame declaring other units is
    converted to them (a note), a frame declaring none is read as if in them (a warning: nothing
    says it is)."""
    units, warnings, notes = [], [], []
    for index in range(len(frames[0])):
        bands = [frame[index] for frame in frames]
        declared = [band for band in bands if band.units.declared]
        reference = declared[0].units if declared else Units()
        units.append(reference)
        first = declared[0].path if declared else ""
        notes += [f"{band.path}: band {band.band} declares {band.units}: read in the units of {first} ({reference})"
                  for band in declared if band.units != reference]
        warnings += [f"{band.path}: band {band.band} declares no scale/offset: read as if in the units of {first} "
                     f"({reference})" for band in bands if declared and not band.units.declared]
    return units, (merge_notes(warnings, "frames"), merge_notes(notes, "frames"))


def open_stack(frame_paths: Sequence[str], mask_paths: Sequence[str] | None = None,
               band: int | None = None, align: bool = False, max_frames: int | None = None,
               mask_options: MaskOptions = MaskOptions(), bands: Sequence[int] | None = None) -> LazyStack:
    """Open frames (and optional masks) of one scene, check they share one grid: a `LazyStack`.

    `plan_stack` checks every header (see there), then `open_planned` reads the pixels: fully
    cloudy and duplicate frames are dropped, the `max_frames` clearest (default: all) kept.
    A pixel is clear when its mask says so (if masks are given: their kinds, `mask_options`), it
    is not the frame's nodata value, and it is finite and within +-VALUE_LIMIT.
    """
    return open_planned(plan_stack(frame_paths, mask_paths, band, align, mask_options, bands), max_frames)


def open_planned(plan: StackPlan, max_frames: int | None = None, required: int | None = None,
                 excluded: Sequence[int] = ()) -> LazyStack:
    """The masks' kinds resolved (`StackPlan.resolve_mask_kinds`), then the planned frames' pixels
    counted and hashed one file at a time (`StackPlan.scan`, once per plan), then fully cloudy
    frames and frames identical to another dropped, the planned frames `excluded` (a run found
    them far too noisy) left aside, the `max_frames` clearest (default: all) kept, planned frame
    `required` among them if it is not dropped before, each with a warning; only those are
    opened: a `LazyStack`, whose `spares` counts the usable frames beyond `max_frames`."""
    plan.resolve_mask_kinds()
    clear, digests = plan.scan()
    paths, warnings = list(plan.frames), list(plan.warnings)
    keep, said = cloudy_selection(paths, clear)
    keep = np.flatnonzero(keep)
    warnings += said
    unique, said = duplicate_selection([paths[i] for i in keep], [digests[i] for i in keep])
    keep = keep[unique]
    warnings += said
    keep = keep[~np.isin(keep, list(excluded))]
    kept_required = int(np.flatnonzero(keep == required)[0]) if required is not None and required in keep else None
    clearest, said = clearest_selection([paths[i] for i in keep], clear[keep], max_frames or len(keep), kept_required)
    spares = len(keep) - len(clearest)
    keep = keep[clearest]
    warnings += said
    ensure_open_files((len(plan.band_numbers) + 1) * len(keep))
    return LazyStack([plan.open(int(i)) for i in keep], plan.grid, [paths[i] for i in keep], clear[keep],
                     plan.nodata, warnings, list(plan.notes), tuple(plan.units), spares)


def read_stack(frame_paths: Sequence[str], mask_paths: Sequence[str] | None = None,
               band: int | None = None, align: bool = False, mask_options: MaskOptions = MaskOptions()) -> Stack:
    """`open_stack`, then every pixel read into memory (see there)."""
    return open_stack(frame_paths, mask_paths, band, align, mask_options=mask_options).load()


def scan_frame(source: FrameSource, grid: Grid) -> tuple[int, bytes]:
    """The number of clear pixels of a frame (of its first band) and a digest of the values and
    clear masks of every band read, read in blocks of READ_BLOCK_ROWS rows."""
    count, digest = 0, hashlib.blake2b(digest_size=16)
    views = [source.band_view(index) for index in range(len(source.bands))] or [source]
    for row0, row1 in row_blocks(grid.height, READ_BLOCK_ROWS):
        for number, view in enumerate(views):
            values, clear = view.read_rows(row0, row1)
            if number == 0:
                count += int(np.count_nonzero(clear))
            digest.update(values.tobytes())
            digest.update(np.packbits(clear).tobytes())
    return count, digest.digest()


def _placement(source: BandSource, grid: Grid, grid_path: str, align: bool, notes: list[str],
               frame: BandSource | None = None, full: Grid | None = None) -> str:
    """How `source` is read onto `grid` (the first frame's, or the window of it an area reads,
    `full` being then the whole first frame's): "" (it is on it), "near" (another footprint on the
    same pixel grid: moved by whole pixels, not resampled; said in `notes`) or "bilinear" (--align
    resamples it); otherwise a one-line MisrError. `frame`: the frame `source` is the mask of."""
    why = grid.mismatch(source.grid)
    if why is None:
        return ""
    offset = grid.offset_of(source.grid)
    if offset is not None:
        cols, rows = full.offset_of(source.grid) if full else offset
        where = f"starts {offset_words(cols, rows)} the first pixel of {grid_path}, on its pixel grid"
        covered = grid.covered_by(source.grid, offset)
        if covered == 0:
            raise MisrError(f"{source.path}: does not overlap {'the area of ' if full else ''}{grid_path} (it {where})")
        outside = "not clear" if frame else "no data"
        cover = f"; it covers {100 * covered:.3g}% of the {'area' if full else 'grid'}, the rest counts as {outside}"
        notes.append(f"{source.path}: {where} (another footprint): read as it is, not resampled"
                     f"{cover if covered < 1 else ''}")
        return "near"
    if not align:
        if frame is not None:
            raise MisrError(f"{source.path}: mask not on the grid of its frame {frame.path} ({why}); "
                            "pass --align to resample it")
        raise MisrError(f"{source.path}: not on the grid of {grid_path} ({why}); "
                        "pass --align to resample it onto that grid")
    if bool(grid.crs_wkt) != bool(source.grid.crs_wkt):
        raise MisrError(f"{source.path}: cannot --align it onto {grid_path}: only one of them has a CRS")
    return "bilinear"


def offset_words(cols: int, rows: int) -> str:
    """Where a raster `cols` columns and `rows` rows off another's origin starts, in the words of a
    map: "2 columns left of and 1 row below" (or "at"), before "the first pixel of ..."."""
    def count(number: int, unit: str) -> str:
        return f"{abs(number)} {unit}{'' if abs(number) == 1 else 's'}"
    parts = ([f"{count(cols, 'column')} {'right of' if cols > 0 else 'left of'}"] if cols else []) + \
        ([f"{count(rows, 'row')} {'below' if rows > 0 else 'above'}"] if rows else [])
    return " and ".join(parts) or "at"


def drop_cloudy_frames(stack: SomeStack) -> SomeStack:
    """Remove frames with no clear pixel, warning about each; fail if none is left."""
    keep, warnings = cloudy_selection(stack.paths, stack.clear_fraction)
    return stack.subset(keep, warnings)


def select_frames(stack: SomeStack, max_frames: int = DEFAULT_MAX_FRAMES) -> tuple[SomeStack, list[str]]:
    """Keep the `max_frames` clearest frames (in their original order); warn about the rest."""
    if len(stack.paths) <= max_frames:
        return stack, []
    keep, warnings = clearest_selection(stack.paths, stack.clear_fraction, max_frames)
    return stack.subset(keep), warnings
