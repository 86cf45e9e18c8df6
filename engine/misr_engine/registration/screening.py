"""Automatic cloud and shadow screening from the time series itself, for frames without masks.

A pixel of a registered frame is screened out when it is a temporal outlier among the frames
at that pixel:

* bright (cloud, haze): above the frames' lower quartile there by more than `BRIGHT_THRESHOLD`
  spreads, the spread being that of the darker dates (10th to 40th percentile, as a standard
  deviation), which clouds on up to half of the dates do not inflate;
* dark (cloud shadow): among the dates not found bright, below their median by more than
  `DARK_THRESHOLD` of their median absolute deviations (as standard deviations).

Each spread is at least its mean over the pixel's neighbourhood (`SPREAD_RADIUS`) and a small
fraction of the pixel's level. The screened areas are then grown by `dilation` pixels: bright
ones only through pixels of the same frame that depart from the other dates by `EDGE_THRESHOLD`
of those spreads (a cloud's thin, faintly bright edge; the shadow beside it), not over the ground
around them; dark ones everywhere. Frames left almost entirely screened out are dropped.

It works on whole-pixel registered frames (as the network sees them) and streams: `ScreenedStack`
reads any window of a stack with the screened pixels marked not clear, reading only the rows it
needs (plus the registration moves and a halo for the neighbourhood and the dilation), and gives
the same pixels whatever the window. Pixels seen by fewer than `MIN_FRAMES` frames are not
screened. Limits: a place cloudy on more than about half of the dates cannot be told from a
bright surface; shallow shadows on dark ground (water) stay; real changes (harvest, flooding)
seen on one or two dates are screened out too (those dates are then filled from the others).
Measured on the sample scene: tests/engine/registration/test_screening.py.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..errors import MisrError
from ..imaging.morphology import disc
from ..imaging.robust import NORMAL_MAD
from ..progress import Say, staged
from ..rasters.any_stack import AnyStack
from ..rasters.in_memory import Stack, clear_fractions_of
from .stack import move_window, whole_pixel_moves

BRIGHT_THRESHOLD = 4.0
DARK_THRESHOLD = 4.0
EDGE_THRESHOLD = 0.5
"""Spreads a pixel must stand above the lower quartile (the bright test's spread) or below the
median (the dark test's) for a bright area of its frame to grow into it. Growing every area by
the dilation marked 13.1% of the truly clear pixels as cloud on validation stacks (6 frames, no
masks; 1.6% with no dilation at all, which let 6.5% of the cloud through instead of 3.2%). Chosen
on 24 validation scenes with 6 frames (scripts/screened_selection_study.py; docs/evaluation/
screening_growth_validation.log) among 0, 0.5 and 1.0 spreads above the lower quartile (cPSNR
+0.18, +0.24, -0.16 dB against growing everywhere), then also through dark departures, which the
simulated clouds lack but real shadows beside clouds need (the sample's added shadows: 68.6%
screened before, 63.3% growing through bright pixels only, 69.3% now): 6 frames +0.174 dB
[+0.067, +0.297], 9 frames +0.217 [+0.047, +0.435] (no scene below -0.07), 12 frames of which
the 6 clearest are used +0.015 [-0.046, +0.060]; clear pixels marked 11.0%, cloud through 3.0%."""
SPREAD_RADIUS = 3
"""The spread is at least its mean over the (2r+1)^2 neighbourhood: a few dates agreeing by
chance do not make a pixel hair-triggered."""
DEFAULT_DILATION = 2
MIN_FRAMES = 3
RELATIVE_FLOOR = 1e-3
"""The spread is at least this fraction of the pixel's lower quartile (identical dates, synthetic data)."""
SPREAD_QUANTILES = (0.1, 0.4)
SPREAD_NORMAL = 1.0282  # the distance between those quantiles of a standard normal
MIN_CLEAR_FRACTION = 0.05
"""Frames screened out over more than 95 % are dropped: what is left of them is mostly missed haze."""


@dataclass(frozen=True)
class Screening:
    """How outliers are found: thresholds in spreads, and how far screened areas grow (pixels)."""

    bright: float = BRIGHT_THRESHOLD
    dark: float = DARK_THRESHOLD
    dilation: int = DEFAULT_DILATION

    @property
    def halo(self) -> int:
        """Pixels of context a window needs around it for the same result as the whole raster:
        a dark outlier's spread is smoothed over pixels whose own bright test was smoothed in
        turn (twice the spread's radius), then screened areas grow by the dilation."""
        return 2 * SPREAD_RADIUS + self.dilation


def _quantile(ordered: np.ndarray, count: np.ndarray, q: float) -> np.ndarray:
    """The `q` quantile (linear interpolation) of the first `count` values of `ordered` along
    axis 0 (sorted, invalid values last); NaN where `count` is 0."""
    position = q * np.maximum(count - 1, 0)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, np.maximum(count - 1, 0))
    lower = np.take_along_axis(ordered, low[None], 0)[0]
    upper = np.take_along_axis(ordered, high[None], 0)[0]
    with np.errstate(invalid="ignore"):
        value = lower + (upper - lower) * (position - low)
    return np.where(count > 0, value, np.nan)


def _smoothed(spread: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """A per-pixel spread, at least its neighbourhood's mean and `floor` (NaN counts as 0)."""
    spread = np.nan_to_num(np.maximum(spread, 0.0))
    return np.maximum(np.maximum(spread, ndimage.uniform_filter(spread, 2 * SPREAD_RADIUS + 1, mode="nearest")), floor)


def temporal_outliers(frames: np.ndarray, valid: np.ndarray, screening: Screening = Screening()) -> np.ndarray:
    """(T, h, w) registered `frames` and their `valid` pixels -> the screened pixels (T, h, w):
    bright or dark temporal outliers (see the module), grown by `screening.dilation`."""
    frames = np.asarray(frames, np.float32)
    count = valid.sum(axis=0)
    ordered = np.sort(np.where(valid, frames, np.inf), axis=0)
    low, lower, high = (_quantile(ordered, count, q) for q in (SPREAD_QUANTILES[0], 0.25, SPREAD_QUANTILES[1]))
    floor = RELATIVE_FLOOR * np.abs(np.nan_to_num(lower)) + 1e-6
    with np.errstate(invalid="ignore"):
        bright_spread = _smoothed((high - low) / SPREAD_NORMAL, floor)
        bright = valid & (frames - lower > screening.bright * bright_spread)
        rest = valid & ~bright
        rest_count = rest.sum(axis=0)
        centre = _quantile(np.sort(np.where(rest, frames, np.inf), axis=0), rest_count, 0.5)
        deviation = np.sort(np.where(rest, np.abs(frames - centre), np.inf), axis=0)
        spread = _smoothed(_quantile(deviation, rest_count, 0.5) / NORMAL_MAD, floor)
        dark = rest & (centre - frames > screening.dark * spread)
        edges = (valid & (frames - lower > EDGE_THRESHOLD * bright_spread)  # faintly bright,
                 | rest & (centre - frames > EDGE_THRESHOLD * spread))          # or a little dark
    seen = count >= MIN_FRAMES
    bright, dark = bright & seen, dark & seen
    if screening.dilation > 0:
        bright = np.stack([ndimage.binary_dilation(b, structure=disc(1), iterations=screening.dilation, mask=b | e)
                           if b.any() else b for b, e in zip(bright, edges)])
        dark = np.stack([ndimage.binary_dilation(d, structure=disc(screening.dilation)) if d.any() else d
                         for d in dark])
    return (bright | dark) & valid


class ScreenedStack:
    """A stack read with its temporal outliers marked not clear (value 0), window by window.

    `evidence` is the stack the outliers are found on (the first band of a multi-band run: every
    band then shares one screening), `moves` the whole-pixel moves that register it. It offers
    what the streamed inference reads of a stack (shape, grid, paths, clear_fraction, read_rows,
    subset, band, cache_bytes, load).
    """

    def __init__(self, inner: AnyStack, moves: np.ndarray, screening: Screening = Screening(),
                 evidence: AnyStack | None = None, clear_fraction: np.ndarray | None = None):
        self.inner, self.evidence = inner, evidence if evidence is not None else inner
        self.moves, self.screening = np.asarray(moves, int), screening
        self.clear_fraction = clear_fraction if clear_fraction is not None else inner.clear_fraction

    shape = property(lambda self: self.inner.shape)
    warnings = property(lambda self: self.inner.warnings)
    grid = property(lambda self: self.inner.grid)
    paths = property(lambda self: self.inner.paths)
    nodata = property(lambda self: self.inner.nodata)
    notes = property(lambda self: list(getattr(self.inner, "notes", [])))
    value_range = property(lambda self: getattr(self.inner, "value_range", None))
    band_count = property(lambda self: getattr(self.inner, "band_count", 1))
    first_bands = property(lambda self: self.inner.first_bands)
    units = property(lambda self: getattr(self.inner, "units", ()))

    def read_rows(self, row0: int, row1: int, col0: int = 0,
                  col1: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frames (T, rows, cols) float32 (0 where not clear) and clear masks of a window, the
        screened pixels not clear (when the evidence is this stack, its rows are read once)."""
        col1 = self.grid.width if col1 is None else col1
        screened, block = self._screened(row0, row1, col0, col1)
        if block is not None and self.evidence is self.inner:
            frames, masks, top, left = block
            window = (slice(None), slice(row0 - top, row1 - top), slice(col0 - left, col1 - left))
            frames, masks = frames[window], masks[window]
        else:
            frames, masks = self.inner.read_rows(row0, row1, col0, col1)
        masks = masks & ~screened
        return np.where(masks, frames, 0).astype(np.float32), masks

    def _screened(self, row0: int, row1: int, col0: int, col1: int
                  ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, int, int] | None]:
        """The screened pixels (T, rows, cols) of a window, in the frames' own (unregistered)
        pixels, and the evidence read for them (frames, masks, first row, first column; None if
        none): only the rows and columns the window's registered pixels come from, with a halo."""
        count, height, width = self.shape
        result = np.zeros((count, row1 - row0, col1 - col0), bool)
        if count < MIN_FRAMES:
            return result, None
        # frame t's pixel (y, x) is registered pixel (y - dy[t], x - dx[t]): the registered window
        # to screen, with a halo, and the input window it comes from (which holds the window itself)
        dy, dx, halo = self.moves[:, 0], self.moves[:, 1], self.screening.halo
        (first, last), (first_col, last_col) = _span(row0, row1, dy, halo, height), _span(col0, col1, dx, halo, width)
        if first >= last or first_col >= last_col:
            return result, None
        top, bottom = _source((first, last), (row0, row1), dy, height)
        left, right = _source((first_col, last_col), (col0, col1), dx, width)
        frames, masks = self.evidence.read_rows(top, bottom, left, right)
        moved, valid = move_window(frames, masks, self.moves, (top, left), ((first, last), (first_col, last_col)),
                                   (height, width), replicate_edges=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            outliers = temporal_outliers(moved, valid, self.screening)
        for index, (down, across) in enumerate(self.moves):  # back to each frame's own pixels
            rows = (max(row0, first + down), min(row1, last + down))
            cols = (max(col0, first_col + across), min(col1, last_col + across))
            if rows[0] < rows[1] and cols[0] < cols[1]:
                result[index, rows[0] - row0:rows[1] - row0, cols[0] - col0:cols[1] - col0] = outliers[
                    index, rows[0] - down - first:rows[1] - down - first,
                    cols[0] - across - first_col:cols[1] - across - first_col]
        return result, (frames, masks, top, left)

    def subset(self, keep: np.ndarray, warnings: Sequence[str] = ()) -> "ScreenedStack":
        """The frames `keep` (indices or booleans), screened among themselves, with `warnings` added."""
        keep = np.asarray(keep)
        evidence = None if self.evidence is self.inner else self.evidence.subset(keep)
        return ScreenedStack(self.inner.subset(keep, warnings), self.moves[keep], self.screening, evidence,
                             self.clear_fraction[keep])

    def band(self, index: int) -> "ScreenedStack":
        """Band `index` of a multi-band stack, screened as this band is (on the same evidence)."""
        return ScreenedStack(self.inner.band(index), self.moves, self.screening, self.evidence, self.clear_fraction)

    def cache_bytes(self) -> int | None:
        sizes = [self.inner.cache_bytes()] + ([self.evidence.cache_bytes()] if self.evidence is not self.inner else [])
        return None if None in sizes else sum(sizes)

    def load(self) -> Stack:
        """Every pixel read into an in-memory `Stack`, screened."""
        frames, masks = self.read_rows(0, self.grid.height)
        return Stack(frames, masks, self.grid, list(self.paths), self.nodata, list(self.warnings))


def _span(low: int, high: int, moves: np.ndarray, halo: int, size: int) -> tuple[int, int]:
    """Along one axis, the registered pixels a window low:high of the frames' own pixels comes
    from (moved by `moves`), with `halo` pixels of context, within the registered pixels some
    frame has (-max(moves):`size` - min(moves): a frame's own edge pixels are screened too)."""
    return (max(-int(moves.max()), low - int(moves.max()) - halo),
            min(size - int(moves.min()), high - int(moves.min()) + halo))


def _source(span: tuple[int, int], window: tuple[int, int], moves: np.ndarray, size: int) -> tuple[int, int]:
    """Along one axis, the input pixels the registered `span` comes from, and the `window` itself."""
    return min(window[0], max(0, span[0] + int(moves.min()))), max(window[1], min(size, span[1] + int(moves.max())))


def screen_stack(stack: AnyStack, screening: Screening = Screening(), passes: int = 2,
                 say: Say | None = None) -> ScreenedStack:
    """`stack` screened for clouds and shadows (see the module), its clear fractions counted
    again and the frames screened out over more than 1 - MIN_CLEAR_FRACTION dropped, with a
    warning each. `say` hears each pass's steps (on a whole Sentinel-2 tile, minutes each).

    Registration and screening help each other: the shifts are first estimated with the clouds
    in, the stack screened, then the shifts estimated again on the screened frames (`passes`
    times in all) before the final screening.
    """
    from .streamed import stack_registration

    evidence: AnyStack = stack
    for number in range(1, passes + 1):
        stage = staged(say, f"screening clouds and shadows, pass {number}/{passes}")
        if stage is not None:
            stage("registering the frames")
        screened = ScreenedStack(stack, whole_pixel_moves(stack_registration(evidence)[0]), screening)
        screened = _mostly_clear(screened, stage)
        stack, evidence = screened.inner, screened
    return screened


def _mostly_clear(screened: ScreenedStack, say: Say | None = None) -> ScreenedStack:
    """`screened` with its clear fractions counted and the frames left mostly screened out dropped."""
    clear = clear_fractions_of(screened, say)
    keep = clear >= MIN_CLEAR_FRACTION
    if not keep.any():
        raise MisrError("every frame is cloudy, nodata or screened out as cloud or shadow: nothing to "
                        f"super-resolve ({', '.join(screened.paths)})")
    screened.clear_fraction = clear
    return screened.subset(keep, [f"{path}: {100 * (1 - fraction):.0f}% screened out as cloud or shadow "
                                  "(or nodata): dropped" for path, fraction, kept in zip(screened.paths, clear, keep)
                                  if not kept])
