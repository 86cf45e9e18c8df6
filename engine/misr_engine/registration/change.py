"""Pixels whose surface changed between dates: left out when the frames are registered.

A field harvested or flooded in some frames is an edge that only those frames have: correlated
against a frame without it, it pulls the shift or drowns the texture's agreement (validation
scenes with a field 0.8-1.5 times the scene's level brighter or darker in 30-50% of the frames:
16 of 106 frames off by more than 0.25 LR px; 2 with these pixels left out). Such pixels stand
out from the stack's temporal median at a scale where misregistration hardly matters, so they
are found before any shift is known: each frame, smoothed, against the median's range within
CHANGE_REACH pixels (a plain comparison took the sides of high-contrast edges a pixel off for
change: up to 27% of a test scene, whose registration it derailed). Constants chosen on
validation scenes (scripts/registration_study.py, scripts/registration_rule_validation.py).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .radiometry import robust_line
from .shift import local_mean

CHANGE_SMOOTHING = 3.0
"""Gaussian smoothing (LR px) of the frames before comparing them: misregistration of a pixel or
two, noise and aliasing average out; a changed field does not."""
CHANGE_DEVIATIONS = 6.0
"""A smoothed pixel further than this many robust standard deviations (of its frame's residuals
against the temporal median) outside the median's range around it has changed."""
CHANGE_REACH = 3
"""Misregistration (LR px) that the comparison tolerates: a frame's pixel is compared with the
range of the expected values within this many pixels, so that a high-contrast edge a pixel or
two off is not taken for change (the frames' shifts are not known yet)."""
CHANGE_MARGIN = 5
"""Changed areas are grown by this many pixels: the edges of a field, which the tolerated
misregistration hides, and which correlate most (``shift.HIGHPASS_SIGMA``)."""
MAX_CHANGED_SHARE = 0.5
"""A frame found changed over more of its clear pixels than this keeps all of them (haze or a
failed radiometric fit, not a field): registering on everything beats registering on nothing."""


def changed_pixels(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(T, H, W) True where a frame's clear pixel shows a surface unlike the stack's temporal
    median (after the frame's own robust gain and offset), grown by CHANGE_MARGIN."""
    frames, masks = np.asarray(frames, np.float64), np.asarray(masks, bool)
    changed = np.zeros(masks.shape, bool)
    if len(frames) < 2:
        return changed
    smooth = np.stack([local_mean(frame, mask, CHANGE_SMOOTHING) for frame, mask in zip(frames, masks)])
    several = masks.sum(axis=0) >= 2
    median = np.full(masks.shape[1:], np.nan)
    median[several] = np.nanmedian(np.where(masks, smooth, np.nan)[:, several], axis=0)
    grow = ndimage.generate_binary_structure(2, 1)
    for index, (frame, mask) in enumerate(zip(smooth, masks)):
        common = mask & several
        if common.sum() < 16:
            continue
        gain, offset = robust_line(median[common], frame[common])
        expected = gain * median + offset
        residual = (frame - expected)[common]
        scale = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
        beyond = np.where(common, _beyond_neighbours(frame, expected, several), 0.0)
        flagged = common & (beyond > CHANGE_DEVIATIONS * max(scale, 1e-12 * float(np.abs(frame[common]).max())))
        flagged = ndimage.binary_dilation(flagged, grow, iterations=CHANGE_MARGIN) & mask
        if flagged.sum() <= MAX_CHANGED_SHARE * mask.sum():
            changed[index] = flagged
    return changed


def _beyond_neighbours(frame: np.ndarray, expected: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """How far each pixel of `frame` lies outside the range of `expected` (valid pixels) within
    CHANGE_REACH pixels: zero wherever a misregistration of up to that much explains it (the
    sides of an edge), large inside a changed field."""
    size = 2 * CHANGE_REACH + 1
    low = ndimage.minimum_filter(np.where(valid, expected, np.inf), size=size, mode="nearest")
    high = ndimage.maximum_filter(np.where(valid, expected, -np.inf), size=size, mode="nearest")
    return np.maximum(low - frame, 0.0) + np.maximum(frame - high, 0.0)
