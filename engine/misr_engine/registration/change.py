"""Pixels whose surface changed between dates: left out when the frames are registered.

A field harvested or flooded in some frames is an edge that only those frames have: correlated
against a frame without it, it pulls the shift or drowns the texture's agreement (measured on
validation scenes with a field 0.8-1.5 times the scene's level brighter or darker in 30-50% of
the frames: 16-25 of 106 frames off by more than 0.25 LR px). Such pixels stand out from the
stack's temporal median at a scale where the frames' misregistration hardly matters, so they can
be found before any shift is known.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .radiometry import robust_line
from .shift import local_mean

CHANGE_SMOOTHING = 3.0
"""Gaussian smoothing (LR px) of the frames before comparing them: misregistration of a pixel or
two, noise and aliasing average out; a changed field does not."""
CHANGE_DEVIATIONS = 8.0
"""A smoothed pixel further than this many robust standard deviations (of its frame's residuals
against the temporal median) from the median has changed."""
CHANGE_MARGIN = 2
"""Changed areas are grown by this many pixels (their edges, the frames' misregistration)."""
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
        residual = np.where(common, frame - gain * median - offset, 0.0)
        deviation = np.abs(residual - np.median(residual[common]))
        scale = 1.4826 * float(np.median(deviation[common]))
        flagged = common & (deviation > CHANGE_DEVIATIONS * max(scale, 1e-12 * float(np.abs(frame[common]).max())))
        flagged = ndimage.binary_dilation(flagged, grow, iterations=CHANGE_MARGIN) & mask
        if flagged.sum() <= MAX_CHANGED_SHARE * mask.sum():
            changed[index] = flagged
    return changed
