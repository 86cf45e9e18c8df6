"""Radiometric normalisation of a registered stack onto the frames' median radiometry.

Dates differ radiometrically (illumination, atmosphere, calibration): each frame is mapped onto
one radiometry by a gain and an offset fitted once per frame over the whole scene, before any
tiling, so that every tile sees the same correction and the SR keeps the frames' level. The
fits are made against the frames' per-block median (in the reference frame's radiometry: a first
pass maps them), then expressed against the frames' median gain and offset (`Radiometry.centred`).
The fit is

* low-pass: on means of blocks of LR pixels that are clear in the frame and at least two frames (aliasing, noise and
  the residual sub-pixel misregistration average out);
* robust: iteratively reweighted least squares with Tukey's biweight on residuals scaled by their
  median absolute deviation, started from a median/MAD fit, so that a real change of the surface
  (a harvested field, a flood: large residuals on a minority of blocks) is not taken for
  radiometry and stays in the frames, where the network can render it;
* on one grid: the frames, registered to whole pixels, are moved by their sub-pixel phases before
  the block means (`fitting_frames`), so that blocks of different frames cover the same ground
  (the residuals' spread fell from 3.5% to 1.1% of the level on a validation scene);
* without the change: a frame's pixels that changed in it (``change.steady_masks``, the
  registration's own test) are left out of its fits. Tukey's weights alone still let the blocks a
  changed field covers in part pull a frame's gain (a field 1.4 x the level in 4 of 9 frames
  moved gains by up to 6% on validation scenes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..imaging.compositing import fill_masked
from ..imaging.resample import shift_image
from ..imaging.robust import robust_std
from .change import steady_masks

MAX_BLOCKS = 200_000
"""Block means kept per frame: blocks grow with the scene so that memory stays bounded."""
MIN_BLOCK = 4
"""Smallest block side (LR pixels)."""
MIN_SAMPLES = 12
"""Fewer common clear blocks than this: the frame keeps gain 1 and gets the median offset."""
MAX_GAIN_ERROR = 0.02
"""A frame's gain is kept only where the blocks determine it to this relative standard error
(`gain_error`); elsewhere it keeps gain 1 and gets the median offset, as with too few blocks. On a
low-contrast scene (water, desert, haze) the blocks' spread is little above their noise and the
robust line fitted the noise: on 32 low-contrast stacks gains up to 4.7 times the true ones
(tests/engine/registration/test_radiometry.py), on one validation scene 1.71 for two frames.
Chosen on validation scenes, 24 per set (scripts/scene_scores.py; docs/evaluation/
gain_error_validation.log), against no bound: 0.02 within +-0.016 dB on every set (low contrast
+0.016, the scene with gains of 1.71 +0.48 dB); 0.01 lost 0.039 [0.001, 0.081] on strong change,
0.05 0.025 [0.000, 0.068] out of range."""
GAIN_ERROR_RAMP: float | None = 0.005
"""The gain is not kept or dropped at MAX_GAIN_ERROR but faded out around it: full below
MAX_GAIN_ERROR - this, none above MAX_GAIN_ERROR + this, linearly between (`gain_weight`; None: the
hard bound). With the hard bound, a frame whose gain error sat at the bound took its gain or not
on a thousandth of a pixel of registration, and with it every frame's map: a field changed in 4
of 9 frames moved the SR away from it by 3.4% of the level on one validation scene (frame 5:
gain 0.89 fitted, 1.0 dropped). Chosen on validation scenes (docs/evaluation/
gain_ramp_validation.log): the change-away figure 0.113% -> 0.109% (worst scene 0.40% -> 0.31%);
SR, 24 scenes per set, within +-0.002 dB in distribution, out of range, surface and strong
change, low contrast +0.019 [-0.002, +0.049], coarse-band stand-in +0.012 [-0.003, +0.035]."""
TUKEY_C = 4.685
"""Tukey's biweight constant (95% efficiency under Gaussian residuals), in robust-sigma units."""
GAIN_RANGE = (0.2, 5.0)
"""Fitted gains are kept in this range (a degenerate fit on a nearly flat scene)."""
ITERATIONS = 10
HALO = 2
"""LR rows read beyond a block of rows so that moving it by its phases brings no edge in."""


@dataclass(frozen=True)
class Radiometry:
    """Per-frame gain and offset: frame = gain * reference + offset on the clear pixels."""

    gains: np.ndarray  # (T,)
    offsets: np.ndarray  # (T,)
    level: float = 0.0
    """A typical value of the scene in the reference's radiometry (the median of the fits' target):
    where `centred` takes the median of the frames' maps."""
    fitted: np.ndarray | None = None
    """(T,) which frames got some of a line (MIN_SAMPLES clear blocks, `gain_weight` above 0); None: all of them."""
    levelled: np.ndarray | None = None
    """(T,) which frames' values at the level the blocks determine (MIN_SAMPLES clear blocks, whether or
    not their gain is determined); None: all of them."""

    @classmethod
    def identity(cls, count: int) -> Radiometry:
        return cls(np.ones(count), np.zeros(count))

    def centred(self) -> Radiometry:
        """The same frames expressed against their median radiometry instead of the reference
        frame's (frame = gain / median gain * M + ..., M = median gain * reference + an offset
        that puts M(level) at the median of the frames' values at `level`): the output's level
        then depends on every frame, not on which is the reference, and moves with the numbers
        when a product adds an offset to them (a median of the offsets, the maps' values at 0,
        would not: 0 lies far outside the scene's values). The gain's median is over the frames whose
        gain the blocks determine (`fitted`), the values' at the level over every frame whose level
        they determine (`levelled`): a frame cloudy over the whole scene (its map a placeholder)
        would move them, and the output's level, by being there, and on low-contrast scenes, where
        two or three frames of nine may have a determined gain, their values alone put the level
        up to 8% off the frames' (docs/evaluation/radiometry_level_votes_rule.md)."""
        count = len(self.gains)
        levelled = np.ones(count, bool) if self.levelled is None or not self.levelled.any() else self.levelled
        fitted = levelled if self.fitted is None or not (self.fitted & levelled).any() else self.fitted & levelled
        gain, offset = central_line(self.gains[levelled], self.offsets[levelled], self.level, fitted[levelled])
        return Radiometry(self.gains / gain, self.offsets - self.gains * offset / gain, fitted=self.fitted,
                          levelled=self.levelled)

    def apply(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """(T, ...) frames in the reference's radiometry; pixels not clear stay 0."""
        shape = (-1,) + (1,) * (frames.ndim - 1)
        mapped = (frames - self.offsets.reshape(shape)) / self.gains.reshape(shape)
        return np.where(masks, mapped, 0.0).astype(np.float32)


def central_line(gains: np.ndarray, offsets: np.ndarray, level: float,
                 gain_voters: np.ndarray | None = None) -> tuple[float, float]:
    """The frames' central radiometry as a line on the reference's values (gain, offset): their
    median gain (over `gain_voters` where given), and the offset that puts the line's value at
    `level` at the median of the frames' values there. The output's radiometry
    (`Radiometry.centred`), and the evaluation's targets' (``datasets.samples``: on the true gains
    and offsets, at the scene's median)."""
    gains = np.asarray(gains, np.float64)
    gain = float(np.median(gains if gain_voters is None else gains[np.asarray(gain_voters, bool)]))
    return gain, float(np.median(gains * level + np.asarray(offsets, np.float64))) - gain * level


def block_size(height: int, width: int) -> int:
    """Block side for a scene: MIN_BLOCK, larger where more than MAX_BLOCKS blocks would result."""
    return max(MIN_BLOCK, int(np.ceil(np.sqrt(height * width / MAX_BLOCKS))))


def block_means(frames: np.ndarray, masks: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Means (T, n) of the whole `block` x `block` blocks of (T, H, W) frames, and whether each
    block is entirely clear (T, n). Rows and columns beyond whole blocks are left out."""
    count, height, width = frames.shape
    rows, cols = height // block, width // block
    if rows == 0 or cols == 0:
        return np.zeros((count, 0)), np.zeros((count, 0), bool)
    window = (slice(None), slice(0, rows * block), slice(0, cols * block))
    shape = (count, rows, block, cols, block)
    values = np.asarray(frames[window], np.float64).reshape(shape).mean(axis=(2, 4))
    clear = np.asarray(masks[window], bool).reshape(shape).all(axis=(2, 4))
    return values.reshape(count, -1), clear.reshape(count, -1)


def fitting_frames(frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the fits are made of: (T, h, w) frames registered to whole pixels moved by their
    sub-pixel `phases` (LR px) onto one grid, and where they are clear there, the pixels that
    changed in their frame (``change.steady_masks``) left out. A moved pixel is clear when all
    it comes from is; beyond the edges counts as clear (the frame mirrored: give a HALO)."""
    steady = steady_masks(frames, masks, phases)
    filled = fill_masked(frames, steady)
    moved = np.stack([shift_image(f, -dy, -dx) for f, (dy, dx) in zip(filled, phases)])
    unclear = np.stack([shift_image((~m).astype(np.float32), -dy, -dx, order=1, mode="constant")
                        for m, (dy, dx) in zip(steady, phases)])
    return moved, unclear < 1e-3


def robust_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(gain, offset) of y = gain * x + offset, robust to a minority of outliers (Tukey IRLS)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    spread_x = robust_std(x)
    gain = robust_std(y) / spread_x if spread_x > 0 else 1.0
    gain = float(np.clip(gain, *GAIN_RANGE))
    offset = float(np.median(y - gain * x))
    for _ in range(ITERATIONS):
        residual = y - gain * x - offset
        scale = robust_std(residual)
        if scale <= 1e-12 * max(1.0, float(np.abs(y).max())):
            break
        u = residual / (TUKEY_C * scale)
        weight = np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0)
        if weight.sum() <= 0:
            break
        mx, my = np.average(x, weights=weight), np.average(y, weights=weight)
        variance = np.average((x - mx) ** 2, weights=weight)
        if variance <= 0:
            break
        gain = float(np.clip(np.average((x - mx) * (y - my), weights=weight) / variance, *GAIN_RANGE))
        offset = float(my - gain * mx)
    return gain, offset


def gain_error(x: np.ndarray, y: np.ndarray, gain: float, offset: float) -> float:
    """The relative standard error of a fitted gain: the residuals' robust spread over the target's
    robust spread, the gain and the square root of the number of blocks."""
    spread = robust_std(x) * abs(gain) * np.sqrt(x.size)
    return float(robust_std(y - gain * x - offset) / spread) if spread > 0 else float("inf")


def fit_radiometry(values: np.ndarray, clear: np.ndarray, reference: int) -> Radiometry:
    """Gain and offset of every frame, from block means (T, n) and their clear flags (T, n)
    (``block_means``, possibly gathered over many row blocks).

    Two passes: every frame against frame `reference`; then, with the frames mapped onto the
    reference's radiometry, every frame against their per-block median. No single frame is the
    target of the final fits, so a change of the surface in some frames (the reference among
    them, or one it makes the sharpest) shifts no frame's fit; the mapping first keeps the
    median's radiometry the same wherever clouds leave other frames clear."""
    first = _fits(values, clear, values[reference], clear[reference])
    target, usable = median_target(first.apply(values, clear), clear)
    fits = _fits(values, clear, target, usable)
    return replace(fits, level=float(np.median(target[usable])) if usable.any() else 0.0)


def _fits(values: np.ndarray, clear: np.ndarray, target: np.ndarray, usable: np.ndarray) -> Radiometry:
    """Every frame's robust line against `target` (n,) on the blocks clear in it and `usable`."""
    count = len(values)
    gains, offsets, fitted = np.ones(count), np.zeros(count), np.zeros(count, bool)
    levelled = (clear & usable).sum(axis=1) >= MIN_SAMPLES
    for index in range(count):
        common = clear[index] & usable
        x, y = target[common], values[index, common]
        line = robust_line(x, y) if levelled[index] and robust_std(x) > 0 else None
        weight = gain_weight(gain_error(x, y, *line)) if line is not None else 0.0
        flat = float(np.median(y - x)) if common.any() else 0.0  # gain 1 and the median offset
        gains[index] = 1.0 + weight * (line[0] - 1.0) if weight else 1.0
        offsets[index] = weight * line[1] + (1.0 - weight) * flat if weight else flat
        fitted[index] = weight > 0
    return Radiometry(gains, offsets, fitted=fitted, levelled=levelled)


def gain_weight(error: float) -> float:
    """How much of a fitted line a frame takes (1: all of it, 0: gain 1 and the median offset),
    from its gain's relative standard error (MAX_GAIN_ERROR, GAIN_ERROR_RAMP)."""
    if GAIN_ERROR_RAMP is None:
        return 1.0 if error <= MAX_GAIN_ERROR else 0.0
    return float(np.clip((MAX_GAIN_ERROR + GAIN_ERROR_RAMP - error) / (2 * GAIN_ERROR_RAMP), 0.0, 1.0))


def median_target(values: np.ndarray, clear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per block, the median of the block means over the frames clear there (n,), and whether
    at least two frames are (n,)."""
    clear = np.asarray(clear, bool)
    usable = clear.sum(axis=0) >= 2
    target = np.zeros(values.shape[1])
    if usable.any():
        target[usable] = np.nanmedian(np.where(clear[:, usable], values[:, usable], np.nan), axis=0)
    return target, usable


def stack_radiometry(frames: np.ndarray, masks: np.ndarray, reference: int, phases: np.ndarray) -> Radiometry:
    """`fit_radiometry` of a (T, H, W) stack registered to whole pixels (`phases`: the sub-pixel
    part of the shifts) held in memory (`fitting_frames`), `Radiometry.centred`."""
    return fit_radiometry(*block_means(*fitting_frames(frames, masks, phases), block_size(*frames.shape[1:])),
                          reference).centred()
