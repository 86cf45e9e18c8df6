"""Scene-level affine normalisation of a stack: what the network's inputs and outputs are relative to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

SAMPLE_LIMIT = 1_000_000
"""Clear pixels kept (an even subsample of every block) to compute the robust statistics."""
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
0.20: -0.019, none: -0.17)."""
MIN_RELATIVE_SPREAD = 0.0
"""A floor at this share of the level (|centre|): 0, replaced by the noise floor (above). It
assumed the level is signal, which offset products break (0.1 was the default until the noise
floor came; kept for scripts/normalisation_floor_study.py --knob level)."""
MAX_FLOOR_STDS = 10.0
"""No floor lifts the spread above this many standard deviations of the clear values: a scene
without variability has no noise to keep in range, and constant frames keep units in which the
network's response to a flat input stays below 1e-3 of the level (with a full floor it drew a
0.14% pattern on constant frames)."""


PER_FRAME = False
"""The scene's units are the median over frames of each frame's own statistics (True), not the
statistics of every frame's values pooled (False): a field that changed, or haze no mask caught,
in fewer than half the frames then moves nothing (see `of_blocks`)."""
MIN_FRAME_SHARE = 0.25
"""Frames with fewer clear pixels than this share of the clearest frame's have no say in the
per-frame median (their statistics describe only the part of the scene they see)."""


MAD_TO_STD = 0.6745
"""The median absolute value of a zero-mean Gaussian, in standard deviations."""


def haar_diagonal(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The finest diagonal Haar wavelet coefficients of (T, H, W) frames over their 2 x 2 blocks
    that are clear throughout: white noise of standard deviation s gives coefficients of standard
    deviation s, while a smooth surface gives almost none (Donoho and Johnstone's noise estimate,
    here with masks, which ``skimage.restoration.estimate_sigma`` does not take)."""
    height, width = frames.shape[-2] // 2 * 2, frames.shape[-1] // 2 * 2
    f = np.asarray(frames[..., :height, :width], np.float64)
    m = np.asarray(masks[..., :height, :width], bool)
    blocks = [(slice(dy, None, 2), slice(dx, None, 2)) for dy in (0, 1) for dx in (0, 1)]
    clear = np.logical_and.reduce([m[..., y, x] for y, x in blocks])
    (a, b, c, d) = (f[..., y, x] for y, x in blocks)
    return ((a - b - c + d) / 2)[clear]


@dataclass(frozen=True)
class Normalisation:
    """Scene-level affine normalisation: network units = (value - centre) / spread.

    Robust statistics of the scene's clear pixels (`of_values`): the median and the median
    absolute deviation (scaled to a standard deviation), so that a field that changed in some
    frames, or haze that no mask caught, does not move the units every pixel of the scene is
    computed in.
    """

    centre: float
    spread: float
    noise: float = 0.0
    """The scene's noise standard deviation (input units; 0 when unknown): ``haar_diagonal``."""

    @classmethod
    def of(cls, frames: np.ndarray, masks: np.ndarray) -> Normalisation:
        """Of the clear pixels of (T, H, W) frames (spread never zero)."""
        return cls.of_blocks(zip(frames, masks))

    @classmethod
    def of_blocks(cls, blocks: Iterable[tuple[np.ndarray, np.ndarray]]) -> Normalisation:
        """`of` over (frames, masks) blocks that together make the stack, one block at a time:
        every `stride`-th clear pixel is kept, the stride doubling whenever more than
        2 x SAMPLE_LIMIT pixels are held, so memory stays bounded whatever the scene.

        With PER_FRAME, the centre and spread are the medians over frames of each frame's own
        (`of_values`, with the scene's noise), frames seeing less than MIN_FRAME_SHARE of what
        the clearest one sees left out: as long as fewer than half the frames show a change
        (a flooded field, a harvest late in the series, a cloud no mask caught), the units are
        those of the frames that do not. Pooled statistics moved with it (the sample, a field
        raised in 3 of 8 frames: the SR moved 0.055% of the level away from it; per frame 0.032%)."""
        kept: list[list[np.ndarray]] = []
        details: list[np.ndarray] = []
        stride, held = 1, 0
        for frames, masks in blocks:
            frames, masks = np.asarray(frames), np.asarray(masks, bool)
            kept = kept or [[] for _ in frames]
            for frame_values, frame, mask in zip(kept, frames, masks):
                frame_values.append(frame[mask][::stride].astype(np.float64))
                held += frame_values[-1].size
            details.append(np.abs(haar_diagonal(frames, masks))[::stride])
            if held > 2 * SAMPLE_LIMIT:
                kept = [[np.concatenate(values)[::2]] for values in kept]
                details, stride = [np.concatenate(details)[::2]], stride * 2
                held = sum(values[0].size for values in kept)
        per_frame = [np.concatenate(values) for values in kept]
        if not any(values.size for values in per_frame):
            return cls(0.0, 1.0)
        detail = np.concatenate(details)
        noise = float(np.median(detail)) / MAD_TO_STD if detail.size else 0.0
        if not PER_FRAME:
            return cls.of_values(np.concatenate(per_frame), noise)
        enough = MIN_FRAME_SHARE * max(values.size for values in per_frame)
        own = [cls.of_values(values, noise) for values in per_frame if values.size >= enough]
        return cls(float(np.median([n.centre for n in own])), float(np.median([n.spread for n in own])), noise)

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
        spread = max(1.4826 * float(np.median(np.abs(values - centre))), 0.5 * std, floor)
        spread = spread if spread > 1e-6 * max(1.0, abs(centre)) else max(1.0, abs(centre)) * 1e-3
        return cls(centre, spread, noise)

    def apply(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Normalised frames with cloudy pixels set to 0 (the scene's centre)."""
        return np.where(masks, (frames - self.centre) / self.spread, 0.0).astype(np.float32)
