"""What every stack goes through before the network: sub-pixel registration onto one frame.

The frames are registered to the clearest frame by phase cross-correlation (the shift is
estimated on a central window of at most ``REGISTRATION_WINDOW`` LR pixels, as misregistration
between acquisitions is a translation at this scale) and resampled onto its grid with their
masks; the residual misregistration is left to the network's TERN filters.
"""

from __future__ import annotations

import numpy as np

from .registration import align_stack, register_stack

REGISTRATION_WINDOW = 512


def central_window(shape: tuple[int, int], size: int) -> tuple[slice, slice]:
    height, width = shape
    y0, x0 = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return slice(y0, y0 + min(size, height)), slice(x0, x0 + min(size, width))


def register(frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Register (T,H,W) frames onto the clearest one. Returns aligned frames, masks and shifts."""
    if len(frames) == 1:
        return frames, masks, np.zeros((1, 2))
    rows, cols = central_window(frames.shape[1:], REGISTRATION_WINDOW)
    window_masks = masks[:, rows, cols]
    usable = window_masks.any(axis=(1, 2))
    shifts = np.zeros((len(frames), 2))
    if usable.sum() > 1:
        shifts[usable] = register_stack(frames[usable][:, rows, cols], window_masks[usable])
    aligned, aligned_masks = align_stack(frames, masks, shifts)
    return aligned, aligned_masks, shifts
