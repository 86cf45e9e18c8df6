"""Scene-level affine normalisation of a stack: what the network's inputs and outputs are relative to."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from ..imaging.robust import NORMAL_MAD, robust_std
from ..registration.change import steady_masks

SAMPLE_LIMIT = 1_000_000
"""Pixels kept (a fixed pseudo-random subsample of positions, `position_keys`) to compute the
robust statistics: at most twice this many; every clear pixel of a smaller scene."""
MAX_NOISE_UNITS: float | None = 0.12
"""The spread is never below the scene's noise (``haar_diagonal``) divided by this, so the network
never sees noise above this many of its units (None: no bound). The training's noise was at most
2% of the level; a low-contrast scene (water, desert, haze) or noisier frames (an old or small
sensor, a dark band) put noise beyond anything it was trained on, and the network sharpened it.
Chosen on validation scenes (scripts/normalisation_floor_study.py; docs/evaluation/
noise_floor_validation.log, floors_validation.log, floors_offset1000_validation.log): alone it
matches the former floor at 0.1 of the level (within 0.011 dB on every set: training ranges,
out of range, surface change, low contrast) and on products whose numbers carry an offset
(Sentinel-2 L2A's +1000 DN) it avoids that floor's loss in the training ranges (+0.074 dB
[+0.019, +0.134]), since the noise does not depend on the offset. Against no floor: out of
range about +0.15 dB, low contrast +0.7 dB; 0.10 gained up to 0.04 dB more on those for -0.014
in the training ranges. Re-checked with the detail gate on (noise_floor_with_gate_validation.log,
12 scenes per set): 0.12 still has the best mean over the four sets (0.10: -0.001 dB, 0.15: -0.003,
0.20: -0.019, none: -0.17). Re-checked with the units without the changed pixels (24 scenes per
set, noise_floor_units_validation.log): none loses 1.23 dB on low contrast and 0.19 out of range;
0.10 is +0.005 dB better on the mean of the four sets, 0.15 -0.017: kept at 0.12."""
MIN_RELATIVE_SPREAD = 0.0
"""A floor at this share of the level (|centre|): 0, replaced by the noise floor (above). It
assumed the level is signal, which offset products break (0.1 was the default until the noise
floor came; kept for scripts/normalisation_floor_study.py --knob level)."""
MAX_FLOOR_STDS = 10.0
"""No floor lifts the spread above this many standard deviations of the clear values: a scene
without variability has no noise to keep in range, and constant frames keep units in which the
network's response to a flat input stays below 1e-3 of the level (with a full floor it drew a
0.14% pattern on constant frames)."""


NOISY_FRAME_RATIO = 3.0
"""A frame whose own noise is at least this many times the median frame's is reported
(`Normalisation.noisy_frames`): a hazy or dark date, another sensor. The estimate also sees some
of a sharp frame's detail: on 24 validation scenes per condition with the same noise in every
frame (scripts/frame_noise_spread.py, docs/evaluation/frame_noise_spread_validation.log), the
noisiest frame's estimate reached at most 1.93 times the median frame's (0.2% noise, training
blurs), 1.49 at 1%, 1.41 with Sentinel-2-like blurs, 1.96 at the training's least noise (0.1%),
1.77 on low contrast at 0.1%; with 4 frames at most 2.31 (low contrast, 0.1%)."""
LEAVE_OUT_RATIO = 5.0
"""A frame at least this many times as noisy as the median frame is left out of the run
(``inference.tiled.leave_out_noisy``; ``--keep-noisy-frames`` keeps it): the network weighs every
frame alike. One frame of 12 validation scenes per set made N times as noisy as the others
(scripts/noisy_frame_study.py, docs/evaluation/noisy_frame_validation.log), leaving it out against
keeping it, at N = 5 / 10: +0.68 [+0.36, +1.05] / +2.29 dB with 9 frames in the training ranges,
+0.66 [+0.19, +1.21] / +3.96 with 4 frames out of them, +0.95 [+0.62, +1.29] / +5.01 on
low-contrast scenes of 9 frames and +2.49 [+0.90, +4.32] / +7.73 of 4 (leaving out an ordinary
frame of 4 costs -0.28). Not 3 (where the added noise still gains +0.27 with 9 frames, +0.02 with
4 out of the ranges, +0.32 / +1.07 on low contrast): the low-contrast validation
scenes as they come have frames up to 3.94 times the median (their frames' noise spans 0.1% to
2% of the level), and leaving out those from 3 times on lost 0.11 dB on that set, one scene
-3.09 dB (4 of its 9 cloudy frames 2.5 to 3.3 times the median). That scene has a changed field
over 19% of it: outside the field leaving its two noisiest frames out took the squared error from
552 to 234 DN^2 (+3.7 dB), inside it the SR then shows the mean of the other dates' state, which
the clear-temporal-mean target counts as error (3,380 -> 5,423). Leaving out a date changes the
state shown where the surface changed; 5 times keeps that to frames whose noise outweighs it. No
validation scene of the five sets, 9 or 4 frames, has a frame 5 times the median as it comes:
their SR is unchanged."""


CHANGED_PIXELS = "imputed"
"""What the scene's units make of the pixels that changed in some frames (``registration.change.
steady_masks``, the registration's own test, block by block): 'kept' (as any clear pixel, the
rule until 2026-12-02), 'left out', or 'imputed' (replaced by the median of the frames clear and
unchanged there: the units of the scene as if nothing had changed). The sample with a field
+1500 DN in some of its 8 frames, the SR 20 px away (scripts/change_attribution.py), imputed /
left out / kept: in 1 frame 0.012 / 0.038 / 0.031% of the level, in 3 frames 0.012 / 0.072 /
0.054%, in half of them (where no rule can tell the changed half) 0.060 / 0.042 / 0.076%. On
validation scenes, 24 per set (scripts/normalisation_floor_study.py --knob units, docs/evaluation/
units_without_change_validation.log), the SR within 0.004 dB of 'kept' on every set for both; the
change-away figure there (scripts/change_away_study.py, change_away_units_validation.log) 0.561%
kept, 0.555% for both, and with the registration held 0.103 / 0.096 / 0.096% (field in 4 of 9
frames) and 0.188 / 0.184 / 0.183% (2 of 9): imputed is never behind on validation and is
ahead on the sample in two of three cases."""
CHANGED_PIXEL_RULES = ("kept", "left out", "imputed")


def haar_diagonal(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The finest diagonal Haar wavelet coefficients of (T, H, W) frames over their 2 x 2 blocks
    that are clear throughout: white noise of standard deviation s gives coefficients of standard
    deviation s, while a smooth surface gives almost none (Donoho and Johnstone's noise estimate,
    here with masks, which ``skimage.restoration.estimate_sigma`` does not take)."""
    coefficients, clear = haar_diagonal_map(frames, masks)
    return coefficients[clear]


def haar_diagonal_map(frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`haar_diagonal` in place: (T, H // 2, W // 2) coefficients, one per 2 x 2 block, and
    whether the block is clear throughout."""
    height, width = frames.shape[-2] // 2 * 2, frames.shape[-1] // 2 * 2
    f = np.asarray(frames[..., :height, :width], np.float64)
    m = np.asarray(masks[..., :height, :width], bool)
    blocks = [(slice(dy, None, 2), slice(dx, None, 2)) for dy in (0, 1) for dx in (0, 1)]
    clear = np.logical_and.reduce([m[..., y, x] for y, x in blocks])
    (a, b, c, d) = (f[..., y, x] for y, x in blocks)
    return (a - b - c + d) / 2, clear


def position_keys(rows: int, width: int, first_row: int, frame: int = 0) -> np.ndarray:
    """A fixed pseudo-random key (0 to 2**20 - 1) for every position of an (rows, width) block of
    a frame, the block's first row being the raster's `first_row`: `Normalisation.of_blocks`
    keeps the pixels whose key is a multiple of its stride, so its subsample depends on where
    pixels are, not on how many clear ones came before (a pixel left out, a changed one, does not
    move the others), the subsamples of growing strides nest, and every frame gives other
    positions (Knuth's multiplicative hash of the position, offset per frame)."""
    position = (np.arange(first_row, first_row + rows, dtype=np.uint64)[:, None] * np.uint64(width)
                + np.arange(width, dtype=np.uint64)[None, :] + np.uint64(frame) * np.uint64(0x9E3779B1))
    return ((position * np.uint64(2654435761) & np.uint64(0xFFFFFFFF)) >> np.uint64(12)).astype(np.uint32)


@dataclass(frozen=True)
class Normalisation:
    """Scene-level affine normalisation: network units = (value - centre) / spread.

    Robust statistics of the scene's clear pixels (`of_values`): the median and the median
    absolute deviation (scaled to a standard deviation), so that a field that changed in some
    frames, or haze that no mask caught, does not move the units every pixel of the scene is
    computed in. (Tried on 2026-12-02 and not kept: the median over frames of each frame's own
    statistics. A field raised in 1 or 2 of the sample's 8 frames then left the units exactly
    where they were, and in 3 of 8 the SR 20 px away moved 0.031% of the level instead of 0.055%;
    in 4 of 8, 0.082% instead of 0.074%; unchanged within 0.001 dB on 24 validation scenes per
    set (docs/evaluation/per_frame_units_validation.log), no help to the change-away figure on
    validation scenes (0.497% -> 0.495%, change_away_change_pass_validation.log), and on a crop
    at a tenth of the contrast the noise floor then lost 0.17 dB.)
    """

    centre: float
    spread: float
    noise: float = 0.0
    """The scene's noise standard deviation (input units; 0 when unknown): ``haar_diagonal``."""
    frame_noise: tuple[float, ...] = ()
    """Each frame's own noise standard deviation, the same estimate over that frame's clear 2 x 2
    blocks (0 for a frame without one; empty when unknown): dates and sensors differ, and a hazy
    or dark acquisition can be many times noisier than the scene's median."""

    def noisy_frames(self, ratio: float = NOISY_FRAME_RATIO) -> list[tuple[int, float]]:
        """(index, times the median frame's noise) of every frame at least `ratio` times as noisy
        as the median of the frames whose noise was measured."""
        noise = np.asarray(self.frame_noise, np.float64)
        measured = noise[noise > 0.0]
        if measured.size < 2:
            return []
        median = float(np.median(measured))
        return [(int(index), float(noise[index] / median)) for index in np.flatnonzero(noise >= ratio * median)]

    @classmethod
    def of(cls, frames: np.ndarray, masks: np.ndarray) -> Normalisation:
        """Of the clear pixels of (T, H, W) frames (spread never zero), with each frame's noise."""
        return cls.of_blocks([(frames, masks)])

    @classmethod
    def of_registered(cls, blocks: Iterable[tuple[np.ndarray, np.ndarray]], phases: np.ndarray) -> Normalisation:
        """`of_blocks` over blocks of frames registered to whole pixels (`phases`: the sub-pixel
        part of their shifts, LR px), the pixels that changed in some frames treated as
        CHANGED_PIXELS says. The changes are found block by block, so where a block ends moves a
        few flags; imputed, such a pixel keeps about its value (48- and 160-px tiles, the tile-size
        test: passes; with the changed pixels left out the units moved 0.2%)."""
        if CHANGED_PIXELS not in CHANGED_PIXEL_RULES:
            raise ValueError(f"CHANGED_PIXELS {CHANGED_PIXELS!r}: one of {CHANGED_PIXEL_RULES}")
        if CHANGED_PIXELS != "kept":
            blocks = (_without_change(frames, masks, phases) for frames, masks in blocks)
        return cls.of_blocks(blocks)

    @classmethod
    def of_blocks(cls, blocks: Iterable[tuple[np.ndarray, np.ndarray]]) -> Normalisation:
        """`of` over (frames, masks) blocks of rows that together make the stack, top to bottom,
        one block at a time: the clear pixels (and clear 2 x 2 blocks, for the noise) whose
        `position_keys` are multiples of a stride are kept, the stride doubling whenever the pixels
        seen, clear or not, exceed 2 x SAMPLE_LIMIT per stride, so memory stays bounded whatever the
        scene (every clear pixel is kept below that)."""
        values, details, stride, first_row, seen = _Kept(), _Kept(), 1, 0, 0
        for frames, masks in blocks:
            frames, masks = np.asarray(frames), np.asarray(masks, bool)
            seen += frames.size
            while seen > 2 * SAMPLE_LIMIT * stride:  # from the pixels seen, clear or not: masks do not move it
                stride *= 2
                values.thin(stride)
                details.thin(stride)
            values.add(frames, masks, first_row, stride)
            coefficients, clear = haar_diagonal_map(frames, masks)
            details.add(np.abs(coefficients), clear, first_row // 2, stride)
            first_row += frames.shape[-2]
        if values.size == 0:
            return cls(0.0, 1.0)
        detail, frame_ids = details.values(), details.frame_ids()
        return replace(cls.of_values(values.values(), _noise(detail)),
                       frame_noise=tuple(_noise(detail[frame_ids == frame]) for frame in range(details.frames)))

    @classmethod
    def of_values(cls, values: np.ndarray, noise: float = 0.0) -> Normalisation:
        """Of a 1-D sample of clear pixel values (and the scene's noise standard deviation, when
        known): the median, and the largest of the scaled MAD, half the standard deviation (a
        scene mostly of water with some land has a tiny MAD: its land would sit hundreds of
        spreads away) and the floors from MIN_RELATIVE_SPREAD of the level and from the noise
        (MAX_NOISE_UNITS; both at most MAX_FLOOR_STDS standard deviations); never below 1e-3 of
        the level (or 1e-3 where the level is near 0)."""
        values = np.asarray(values, np.float64)
        centre = float(np.median(values))
        std = float(values.std())
        noise_floor = noise / MAX_NOISE_UNITS if MAX_NOISE_UNITS else 0.0
        floor = min(max(MIN_RELATIVE_SPREAD * abs(centre), noise_floor), MAX_FLOOR_STDS * std)
        spread = max(robust_std(values), 0.5 * std, floor)
        spread = spread if spread > 1e-6 * max(1.0, abs(centre)) else max(1.0, abs(centre)) * 1e-3
        return cls(centre, spread, noise)

    def apply(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Normalised frames with cloudy pixels set to 0 (the scene's centre)."""
        return np.where(masks, (frames - self.centre) / self.spread, 0.0).astype(np.float32)


def _noise(detail: np.ndarray) -> float:
    """The noise standard deviation that absolute finest diagonal coefficients show (0: none)."""
    return float(np.median(detail)) / NORMAL_MAD if detail.size else 0.0


def _without_change(frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (T, h, w) block of frames registered to whole pixels (sub-pixel `phases` left) and its
    masks, the pixels that changed in some frames (``steady_masks``) treated as CHANGED_PIXELS
    says: left out, or replaced by the median of the frames clear and unchanged there (left out
    where there is none)."""
    frames, masks = np.asarray(frames), np.asarray(masks, bool)
    steady = steady_masks(frames, masks, phases)
    changed = masks & ~steady
    if CHANGED_PIXELS == "left out" or not changed.any():
        return frames, steady
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels with no steady frame
        stand_in = np.nanmedian(np.where(steady, frames, np.nan), axis=0)
    return np.where(changed, stand_in, frames), steady | (changed & np.isfinite(stand_in))


class _Kept:
    """Values kept by `Normalisation.of_blocks`, with their position keys."""

    def __init__(self) -> None:
        self._values: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._frames: list[np.ndarray] = []
        self.size = 0
        self.frames = 0  # of the (T, h, w) blocks added (0 for (h, w) ones)

    def add(self, image: np.ndarray, clear: np.ndarray, first_row: int, stride: int) -> None:
        """Keep the clear values of an (h, w) or (T, h, w) block `image` whose first row is the
        raster's `first_row` at the positions whose `position_keys` are multiples of `stride`
        (every clear value at 1), in the order of ``image[clear]``."""
        frames = (image, clear) if image.ndim == 3 else (image[None], clear[None])
        for frame, (values, usable) in enumerate(zip(*frames)):
            keys = position_keys(*usable.shape, first_row, frame)
            chosen = usable & (keys % stride == 0) if stride > 1 else usable
            self._values.append(np.asarray(values[chosen], np.float64))
            self._keys.append(keys[chosen])
            self._frames.append(np.full(self._values[-1].size, frame, np.int32))
            self.size += self._values[-1].size
        if image.ndim == 3:
            self.frames = max(self.frames, len(image))

    def thin(self, stride: int) -> None:
        """Keep only the values whose keys are multiples of the (doubled) `stride`."""
        if self._values:
            keys = np.concatenate(self._keys)
            chosen = keys % stride == 0
            self._values, self._keys = [self.values()[chosen]], [keys[chosen]]
            self._frames = [np.concatenate(self._frames)[chosen]]
            self.size = self._values[0].size

    def values(self) -> np.ndarray:
        return np.concatenate(self._values) if self._values else np.zeros(0)

    def frame_ids(self) -> np.ndarray:
        """The frame of (T, h, w) blocks each kept value came from, in the order of `values`."""
        return np.concatenate(self._frames) if self._frames else np.zeros(0, np.int32)
