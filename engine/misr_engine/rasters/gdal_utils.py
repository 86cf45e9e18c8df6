"""GDAL plumbing shared by the raster modules: quiet errors, one-line reasons, a bounded block cache."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from osgeo import gdal

gdal.UseExceptions()


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


def bounded_cache(size: int) -> int:
    """The size of GDAL's block cache inside `gdal_cache_limit(size)`."""
    previous = gdal.GetCacheMax()
    return previous if os.environ.get("GDAL_CACHEMAX") else min(int(size), previous)


@contextmanager
def quiet_gdal() -> Iterator[None]:
    """Silence GDAL's own stderr messages (warnings about damaged files); errors still raise."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        yield
    finally:
        gdal.PopErrorHandler()


def gdal_reason(exc: BaseException, path: str) -> str:
    """GDAL's message for `exc` without the file name it repeats (the caller names the file)."""
    text = _first_line(exc)
    for noise in (f"`{path}'", f"{path}:", f"{path},"):
        text = text.replace(noise, "")
    return text.replace(path, "the file").strip(" :,.") or exc.__class__.__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__
