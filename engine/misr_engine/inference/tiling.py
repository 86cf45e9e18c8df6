"""Overlapping tiles over an LR raster and seamless blending of their x3 outputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_TILE_SIZE = 128
"""LR pixels per tile side: bounds the memory of one forward pass."""
DEFAULT_OVERLAP = 16
"""LR pixels shared by neighbouring tiles, blended with linear ramps."""
MIN_TILE_SIZE = 16
"""The smallest tile side (LR pixels) the engine runs: asked for, or reached by halving on out-of-memory."""


@dataclass(frozen=True)
class Tile:
    """An LR window: rows y0:y0+height, columns x0:x0+width."""

    y0: int
    x0: int
    height: int
    width: int

    def lr_slice(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.height), slice(self.x0, self.x0 + self.width)

    def sr_slice(self, scale: int) -> tuple[slice, slice]:
        return (slice(self.y0 * scale, (self.y0 + self.height) * scale),
                slice(self.x0 * scale, (self.x0 + self.width) * scale))


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile` overlapping by >= `overlap`."""
    if length <= tile:
        return [0]
    step = tile - overlap
    count = int(np.ceil((length - tile) / step)) + 1
    return [int(round(i * (length - tile) / (count - 1))) for i in range(count)]


def make_tiles(height: int, width: int, tile_size: int, overlap: int) -> list[Tile]:
    """Equal-sized tiles (clamped to the raster) covering it, overlapping by at least `overlap`."""
    overlap = min(overlap, tile_size // 2)
    th, tw = min(tile_size, height), min(tile_size, width)
    return [Tile(y, x, th, tw) for y in _starts(height, th, overlap) for x in _starts(width, tw, overlap)]


def blend_window(height: int, width: int, ramp: int) -> np.ndarray:
    """Weights that fall linearly to near zero over `ramp` pixels at each edge of a tile."""
    def profile(n: int) -> np.ndarray:
        r = max(1, min(ramp, n // 2))
        edge = (np.arange(r) + 0.5) / r
        weights = np.ones(n, np.float32)
        weights[:r] = edge
        weights[n - r:] = np.minimum(weights[n - r:], edge[::-1])
        return weights
    return np.outer(profile(height), profile(width)).astype(np.float32)


class StripBlender:
    """Accumulates weighted tile outputs and normalises them, holding only the SR rows that a later
    tile can still touch: give it the tiles in `make_tiles` order (row by row) and `take` each
    finished strip of rows (or everything at the end).

    Memory: (channels + 1) x (about one tile height x scale) x (width x scale) float32.
    """

    def __init__(self, width: int, channels: int, scale: int, ramp: int):
        self.scale, self.ramp, self.width = scale, ramp, width
        self.row0 = 0  # first SR row still held
        self.sums = np.zeros((channels, 0, width), np.float32)
        self.weights = np.zeros((0, width), np.float32)

    def add(self, tile: Tile, output: np.ndarray) -> None:
        """Add a (channels, h*scale, w*scale) output for `tile`."""
        rows, cols = tile.sr_slice(self.scale)
        top, bottom = rows.start - self.row0, rows.stop - self.row0
        if top < 0:
            raise ValueError(f"tile at LR row {tile.y0} reaches above the rows already taken")
        if bottom > len(self.weights):
            grow = bottom - len(self.weights)
            self.sums = np.concatenate([self.sums, np.zeros((len(self.sums), grow, self.width), np.float32)], 1)
            self.weights = np.concatenate([self.weights, np.zeros((grow, self.width), np.float32)])
        window = blend_window(output.shape[-2], output.shape[-1], self.ramp * self.scale)
        self.sums[:, top:bottom, cols] += output * window
        self.weights[top:bottom, cols] += window

    def take(self, until: int) -> np.ndarray:
        """The blended SR rows from the first row still held to `until` (exclusive), released."""
        count = until - self.row0
        strip = self.sums[:, :count] / np.maximum(self.weights[:count], 1e-12)
        self.sums, self.weights = self.sums[:, count:].copy(), self.weights[count:].copy()
        self.row0 = until
        return strip
