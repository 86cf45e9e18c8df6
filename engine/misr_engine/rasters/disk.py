"""Free disk space for a run's outputs, checked before any pixel is read: a job whose outputs
cannot fit is refused at once rather than after hours (a disk that fills up anyway is still a
one-line error: `writer.write_error`)."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Sequence

from ..errors import MisrError
from .grid import Grid

COMPRESSION_RATIO = 1.25
"""Raw float32 bytes per output byte assumed: the lowest ratio measured on real SR outputs (SR and
uncertainty of six Sentinel-2 bands, no nodata: 1.26 to 1.48 with the writer's DEFLATE and
floating-point predictor; docs/performance.md). Nodata areas compress far better; noise less."""


def output_bytes(grid: Grid) -> tuple[int, int]:
    """(expected, uncompressed) size of one float32 output on `grid`."""
    raw = 4 * grid.width * grid.height
    return int(raw / COMPRESSION_RATIO), raw


def check_free_space(paths: Sequence[str], grid: Grid, source: str = "") -> list[str]:
    """Refuse outputs that will not fit on their file systems (with the expected compression),
    in one line; warn when they would not fit uncompressed. `grid` is the outputs' grid, `source`
    the input whose size it is (named in the message)."""
    expected, raw = output_bytes(grid)
    by_device: dict[int, list[str]] = defaultdict(list)
    for path in paths:
        folder = os.path.dirname(os.path.realpath(path))
        by_device[os.stat(folder).st_dev].append(path)
    warnings = []
    for group in by_device.values():
        folder = os.path.dirname(os.path.realpath(group[0]))
        status = os.statvfs(folder)
        free = status.f_bavail * status.f_frsize
        needed, uncompressed = expected * len(group), raw * len(group)
        names = " and ".join(group)
        if needed > free:
            of = f" (the x3 of {source})" if source else ""
            raise MisrError(f"{group[0]}: not enough disk space in {folder}: {names}{of} need about {_gb(needed)} "
                            f"({_gb(uncompressed)} uncompressed, {grid.width}x{grid.height} float32 pixels each) "
                            f"and {_gb(free)} are free")
        if uncompressed > free:
            warnings.append(f"{names}: {_gb(free)} free in {folder}: enough only if the outputs compress as usual "
                            f"(about {_gb(needed)}; {_gb(uncompressed)} uncompressed)")
    return warnings


def _gb(count: int) -> str:
    return f"{count / 2 ** 30:.2f} GB" if count >= 2 ** 28 else f"{count / 2 ** 20:.1f} MB"
