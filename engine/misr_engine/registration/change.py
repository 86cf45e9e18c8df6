"""Pixels that changed in some frames, left out of the registration.

A field harvested, flooded or built on between the dates differs from the other frames far more
than noise, aliasing or a gain does; its edges pull the shifts of the frames that show it (and
the choice of the reference frame) towards or away from the others'. The registration therefore
runs twice: once on the clear pixels, then on the clear pixels that agree with the other frames
(`steady_masks`).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from ..imaging.resample import shift_image
from .shift import shift_mask

CHANGE_SIGMAS: float | None = None
"""A pixel of a frame changed where it departs from the frames' per-pixel median by more than
this many robust standard deviations of that frame's departures (None: nothing left out)."""
MAX_CHANGED_SHARE = 0.5
"""A frame that would lose more than this share of its clear pixels keeps them all: what it
shows is not a local change (haze over the frame, another season) and registration needs them."""
MIN_FRAMES = 3
"""The per-pixel median needs at least this many clear frames there (else nothing is flagged)."""
GROW = 1
"""LR pixels the changed areas are grown by: a change's blurred edge is changed too."""


def steady_masks(frames: np.ndarray, masks: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """`masks` (T, h, w) without the pixels that changed in their frame (`changed_pixels`):
    what the second registration pass correlates."""
    masks = np.asarray(masks, bool)
    if CHANGE_SIGMAS is None or len(frames) < MIN_FRAMES:
        return masks
    changed = changed_pixels(frames, masks, shifts)
    too_many = changed.sum(axis=(1, 2)) > MAX_CHANGED_SHARE * masks.sum(axis=(1, 2))
    changed[too_many] = False
    return masks & ~changed


def changed_pixels(frames: np.ndarray, masks: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Where (T, h, w) each clear pixel departs from the other frames (CHANGE_SIGMAS), in the
    frame's own grid: every frame moved by -`shifts` (LR px) onto the common grid, standardised
    (median and MAD of its clear pixels, so that gains and offsets do not count), compared with
    the per-pixel median of the frames clear there, the flags grown by GROW and moved back."""
    frames = np.asarray(frames, np.float64)
    clear = masks & np.isfinite(frames)
    aligned = np.stack([shift_image(np.where(m, f, _median(f[m])), -dy, -dx)
                        for f, m, (dy, dx) in zip(frames, clear, shifts)])
    aligned_clear = np.stack([shift_mask(m, -dy, -dx) for m, (dy, dx) in zip(clear, shifts)])
    standard = np.full(aligned.shape, np.nan)
    for t, (image, usable) in enumerate(zip(aligned, aligned_clear)):
        if usable.sum() > 1:
            centre = np.median(image[usable])
            standard[t][usable] = (image[usable] - centre) / max(_mad(image[usable] - centre), 1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels clear in no frame
        median = np.nanmedian(standard, axis=0)
    median[np.isfinite(standard).sum(axis=0) < MIN_FRAMES] = np.nan
    changed = np.zeros(frames.shape, bool)
    for t, (departure, (dy, dx)) in enumerate(zip(standard - median, shifts)):
        valid = np.isfinite(departure)
        if valid.sum() < 2:
            continue
        departure = departure - np.median(departure[valid])
        outlier = np.zeros(valid.shape, bool)
        outlier[valid] = np.abs(departure[valid]) > CHANGE_SIGMAS * max(_mad(departure[valid]), 1e-12)
        if outlier.any():
            grown = ndimage.binary_dilation(outlier, iterations=GROW) if GROW else outlier
            changed[t] = shift_image(grown.astype(np.float32), dy, dx, order=1, mode="constant") > 0.0
    return changed & clear


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else 0.0


def _mad(values: np.ndarray) -> float:
    """Median absolute deviation from 0, scaled to a Gaussian's standard deviation."""
    return 1.4826 * float(np.median(np.abs(values)))
