"""The memory a run needs, estimated from the headers before any pixel is read, and the budget
it may use: a run that would not fit is refused in one line instead of being killed.

Memory grows with the raster's *width* (rows of tiles span it: input rows, the blender, the
output strips and GDAL's block cache, and without masks the cloud screening), with the tile (the
network's activations) and the registration window (at most 512 x 512 px), never with the
height. The constants were measured on this engine (peak RSS, see docs/performance.md); the
estimate errs on the high side (by up to a third on wide rasters, up to 2x on narrow ones).

The budget: `--memory-budget` or the environment variable MISR_MEMORY_BUDGET (bytes, or with a
unit: 800M, 6G), by default half of the memory available to the process (the physical memory,
or a lower cgroup limit, or what `ulimit -v` leaves), or in a Dask worker (`misr batch`) 80% of
the worker's memory limit.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

from ..errors import MisrError
from ..rasters.grid import Grid

ENVIRONMENT = "MISR_MEMORY_BUDGET"
DEFAULT_SHARE = 0.5
"""Share of the available memory a run may use by default (QGIS and the rest keep the other half)."""
WORKER_SHARE = 0.8
"""Share of a Dask worker's memory limit a scene may use by default: Dask pauses a worker at 80%
of its limit and restarts it at 95% (the scene would be retried, then fail as a lost worker)."""
WORKER_SOURCE = "80% of the Dask worker's memory limit"
ENGINE_BYTES = 450 * 2 ** 20
"""Python, numpy, GDAL, torch and their libraries before any data (measured peak RSS: ~400 MB)."""
WARP_BYTES = 64 * 2 ** 20
"""GDAL's warper works in chunks of this much (WarpMemoryLimit) per warped read."""
SCAN_ROWS = 64
"""Rows of one file read at a time while ranking the frames (`rasters.in_memory.READ_BLOCK_ROWS`)."""
ROW_REACH = 8
"""Rows of registration reach assumed on each side of a row of tiles (whole-pixel shifts)."""

# Peak bytes per LR column of a row of tiles, fitted to the peak RSS of rows of tiles (a stand-in
# network) on 20,000 and 40,000 pixel wide rasters, 64 to 600 rows, 4 to 12 frames, 32 to 256 pixel
# tiles (docs/performance.md): GDAL's cache + fixed + rows x (per row + frames x per frame row).
FIXED_PER_OUTPUT = 8960  # an output's buffered block rows (256 SR rows), their copy and cache
PER_ROW = 165  # per LR row of a row of tiles: the blender's SR rows and the finished strip
PER_FRAME_ROW = 19.5  # per frame and LR row: read rows, their registered copy, the prefetched next row
SCREENED_PER_FRAME_COLUMN = 7000
"""Bytes per frame and LR column the automatic cloud screening adds to a run's peak (its sorts and
quantiles of registered rows, `registration.screening.temporal_outliers`, in the passes over the
scene and each row of tiles): the peak RSS of screened runs above the same runs with masks, 6000
px wide, 4-12 frames, 64-256 px tiles, was 6,000-7,000 bytes (docs/performance.md)."""
REGISTRATION_PER_PIXEL = 1000
REGISTRATION_PER_FRAME_PIXEL = 30
SCREENED_REGISTRATION_PER_FRAME_PIXEL = 80
"""Bytes per pixel of the registration window (at most 512 x 512, `registration.stack`), and per
frame and pixel, plain and screened for clouds: fitted above the peak RSS of `stack_registration`
on 140 x 140 to 512 x 512 windows of 4-16 frames (docs/performance.md)."""
MARGIN = 1.3  # the fit was 15% low at worst on ru_maxrss; VmHWM growth from a reset (the tests) reads 0-3% above 1.15x


@dataclass(frozen=True)
class MemoryEstimate:
    """The peak memory of a run (bytes) and what it is made of."""

    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def largest(self) -> str:
        return max(self.parts, key=self.parts.get)


def strip_bytes(grid: Grid, frames: int, tile_size: int, outputs: int = 2, cache_bytes: int = 0) -> int:
    """Memory of one row of tiles across the width: input rows of every frame (and the next row,
    prefetched), the blender's SR rows, the finished strip, the writers' buffers, and GDAL's
    block cache (`cache_bytes`, its bound while streaming)."""
    rows = min(tile_size, grid.height) + 2 * ROW_REACH
    per_column = outputs * FIXED_PER_OUTPUT + rows * (PER_ROW + PER_FRAME_ROW * frames)
    return int(MARGIN * (cache_bytes + per_column * grid.width))


def screening_bytes(grid: Grid, frames: int) -> int:
    """Memory the automatic cloud screening of `frames` frames adds across the width (0: none)."""
    return int(MARGIN * SCREENED_PER_FRAME_COLUMN * frames * grid.width)


def registration_bytes(grid: Grid, frames: int, screened: bool = False) -> int:
    """Memory of estimating the shifts of `frames` frames on the registration window (screened
    for clouds without masks); 0 for a single frame."""
    from ..registration.stack import REGISTRATION_WINDOW  # not at import: scipy, ~1 s

    if frames <= 1:
        return 0
    pixels = min(grid.height, REGISTRATION_WINDOW) * min(grid.width, REGISTRATION_WINDOW)
    per_frame = REGISTRATION_PER_FRAME_PIXEL + (SCREENED_REGISTRATION_PER_FRAME_PIXEL if screened else 0)
    return int(MARGIN * pixels * (REGISTRATION_PER_PIXEL + per_frame * frames))


def scan_bytes(grid: Grid) -> int:
    """Memory of ranking the frames: one block of rows of one file at a time."""
    return 40 * SCAN_ROWS * grid.width


def warp_bytes(grid: Grid, warped: int, rotated: bool) -> int:
    """Memory of `warped` bands resampled by --align: whole in memory onto a rotated grid, in
    chunks through a VRT otherwise."""
    if not warped:
        return 0
    return 4 * grid.width * grid.height * warped if rotated else WARP_BYTES


def estimate(grid: Grid, frames: int, tile_size: int, *, outputs: int = 2,
             cache_bytes: int = 0, network_bytes: int = 0, tile_bytes: int = 0,
             warp: int = 0, registered: int = 0, screened: int = 0, pool: int = 0) -> MemoryEstimate:
    """A run's peak memory: the engine, the network (weights, and on the CPU one tile's
    activations), the larger of ranking the frames and registering the `registered` frames then
    running the rows of tiles (the registration's memory, freed, is not all reused: the two add
    up), and without masks the cloud screening of the `screened` frames a run uses, or of the
    `pool` of frames screened beforehand to choose the clearest where that needs more (the rows
    of tiles have not started then: only what it needs beyond them counts)."""
    data = max(scan_bytes(grid), registration_bytes(grid, registered, screened > 0)
               + strip_bytes(grid, frames, tile_size, outputs, cache_bytes))
    screening = max(screening_bytes(grid, screened), screening_bytes(grid, pool) - data)
    return MemoryEstimate({"engine": ENGINE_BYTES, "network": network_bytes, "tiles": tile_bytes,
                           "rows of tiles": data, "cloud screening": screening, "--align warps": warp})


def check_memory(estimated: MemoryEstimate, budget: int, source: str, grid: Grid, subject: str = "") -> None:
    """A one-line MisrError when the run would need more than `budget` bytes (`source`: where the
    budget comes from; `subject`: the file whose grid it is, named first)."""
    if estimated.total <= budget:
        return
    largest = estimated.largest()
    hint = {"rows of tiles": f"the raster is {grid.width} pixels wide and rows of tiles span it: use a smaller "
                             "--tile-size or fewer --max-frames, or cut the raster into narrower pieces",
            "tiles": "use a smaller --tile-size or fewer --max-frames",
            "cloud screening": f"the automatic cloud screening spans the raster's {grid.width} pixel width: give "
                               "cloud masks or fewer --max-frames, or cut the raster into "
                               "narrower pieces",
            "network": "the weights file's network is that large",
            "--align warps": "--align onto a rotated grid holds every warped frame in memory: "
                             "warp them beforehand (gdalwarp)"}.get(largest, "")
    named = f"{subject}: {grid.width}x{grid.height} pixels: " if subject else ""
    raise MisrError(f"{named}this run needs about {_size(estimated.total)} of memory ({largest}: "
                    f"{_size(estimated.parts[largest])}) and the budget is {_size(budget)} ({source}); "
                    f"{hint}, or raise the budget with "
                    + ("a memory_budget column or --set memory_budget=SIZE, or give each Dask worker more "
                       "memory (fewer --workers)" if source.startswith(WORKER_SOURCE) else
                       f"--memory-budget or {ENVIRONMENT}"))


def memory_budget(requested: str | None = None) -> tuple[int, str]:
    """The bytes a run may use and where that number comes from (for the messages)."""
    for text, source in ((requested, "--memory-budget"), (os.environ.get(ENVIRONMENT), ENVIRONMENT)):
        if text:
            return parse_size(text, source), f"{source} {text}"
    worker = dask_worker_limit()
    if worker is not None:
        return int(worker * WORKER_SHARE), f"{WORKER_SOURCE} ({_size(worker)})"
    available, what = memory_available()
    return int(available * DEFAULT_SHARE), f"half of {what}"


def dask_worker_limit() -> int | None:
    """The memory limit (bytes) of the Dask worker this code runs in (`misr batch`: each worker
    has its share of the machine, or its cluster's setting); None outside a worker or without a
    limit."""
    distributed = sys.modules.get("distributed")  # a worker has imported it; nothing else needs to
    if distributed is None:
        return None
    try:
        worker = distributed.get_worker()
    except ValueError:  # not in a worker's task
        return None
    limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    return int(limit) if limit else None


def parse_size(text: str, source: str = "--memory-budget") -> int:
    """Bytes from '123', '800M', '6G', '1.5T' (powers of 1024), or a one-line MisrError."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[iI]?[bB]?\s*", str(text))
    if not found:
        raise MisrError(f"{source} {text}: not a size (give bytes, or a number with K, M, G or T)")
    value = float(found[1]) * 1024 ** " KMGT".index((found[2] or " ").upper())
    if value < 1:
        raise MisrError(f"{source} {text}: must be more than 0")
    return int(value)


def memory_available() -> tuple[int, str]:
    """The memory this process may use (bytes) and what limits it: the physical memory, a lower
    cgroup (container) limit, or the address space `ulimit -v` leaves."""
    found = [(_physical_memory(), "the physical memory")]
    cgroup = _cgroup_limit()
    if cgroup:
        found.append((cgroup, "the container's memory limit"))
    address_space = _address_space_left()
    if address_space is not None:
        found.append((address_space, "the address space left by ulimit -v"))
    value, what = min(found)
    return value, f"{what} ({_size(value)})"


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory so far (bytes): VmHWM of /proc/self/status on Linux,
    its own; getrusage's ru_maxrss elsewhere (on Linux a process keeps the ru_maxrss of the
    process that started it across exec: a child of a large process would report the parent's
    peak). None where neither exists (Windows)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def peak_rss_mib() -> float | None:
    """`peak_rss_bytes` in MiB, to 0.1 (the figure reports print); None where it is unknown."""
    peak = peak_rss_bytes()
    return None if peak is None else round(peak / 2 ** 20, 1)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2 ** 30  # not on Unix: assume a common laptop


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as handle:
                text = handle.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2 ** 60:
            return int(text)
    return None


def _address_space_left() -> int | None:
    try:
        import resource
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, ValueError, OSError):
        return None
    if limit == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm") as handle:
            used = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        used = 0
    return max(0, limit - used)


def _size(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"
