"""A stack of frames in memory, and what every stack shares that reads no file: its row blocks, its
frame selection, its clear fractions. No GDAL here (it is imported only where a stack reads files),
so the tiled inference and training run where GDAL is absent, as on a GPU machine's image."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..progress import Say, counted
from .grid import Grid

READ_BLOCK_ROWS = 64
"""Rows per window when a pass reads a whole raster (the clear fractions)."""


class RowReader(Protocol):
    """What a pass over a whole stack needs of it (a `Stack` or a `rasters.stack.LazyStack`)."""

    @property
    def shape(self) -> tuple[int, int, int]: ...

    def read_rows(self, row0: int, row1: int, col0: int = 0,
                  col1: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def cache_bytes(self) -> int | None: ...


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
    def in_memory(cls, frames: np.ndarray, masks: np.ndarray) -> Stack:
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

    def subset(self, keep: np.ndarray, warnings: Sequence[str] = ()) -> Stack:
        """The frames `keep` (indices or booleans), with `warnings` added."""
        index = frame_indices(keep)
        return Stack(self.frames[index], self.masks[index], self.grid, [self.paths[i] for i in index],
                     self.nodata, self.warnings + list(warnings))

    def load(self) -> Stack:
        """This stack (already in memory)."""
        return self

    def cache_bytes(self) -> int | None:
        """No bound on GDAL's block cache: nothing is read from files."""
        return None


def row_blocks(height: int, rows: int) -> list[tuple[int, int]]:
    """(row0, row1) windows of at most `rows` rows covering [0, height)."""
    return [(row0, min(height, row0 + max(1, rows))) for row0 in range(0, height, max(1, rows))]


def frame_indices(keep: np.ndarray) -> np.ndarray:
    """Frame indices from indices or a boolean selection."""
    keep = np.asarray(keep)
    return np.flatnonzero(keep) if keep.dtype == bool else keep.astype(int)


def read_cache_limit(size: int | None) -> AbstractContextManager[None]:
    """GDAL's block cache bounded to `size` bytes (``gdal_utils.gdal_cache_limit``) while a stack
    that reads files is read; nothing, and no GDAL import, for a stack in memory (`size` None)."""
    if size is None:
        return nullcontext()
    from .gdal_utils import gdal_cache_limit

    return gdal_cache_limit(size)


def clear_fractions_of(stack: RowReader, say: Say | None = None) -> np.ndarray:
    """Fraction of clear pixels of every frame of any stack (its `read_rows`), in row blocks
    (`say` hears the share of the rows done)."""
    count, height, width = stack.shape
    counts = np.zeros(count, np.int64)
    with read_cache_limit(stack.cache_bytes()):
        for row0, row1 in counted(row_blocks(height, READ_BLOCK_ROWS), say):
            counts += stack.read_rows(row0, row1)[1].reshape(count, -1).sum(axis=1)
    return counts / (width * height)
