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


def sharpness(frame: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared difference between vertically adjacent clear pixels."""
    both = mask[1:, :] & mask[:-1, :]
    differences = np.diff(frame.astype(np.float64), axis=0)[both]
    return float(np.mean(differences ** 2)) if differences.size else 0.0


def canonical_order(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Frame indices, clearest first, ties broken by sharpness: a function of content, not order."""
    keys = [(-int(m.sum()), -sharpness(f, m)) for f, m in zip(frames, masks)]
    return np.array(sorted(range(len(frames)), key=lambda t: keys[t]), dtype=int)


def register(frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Register (T,H,W) frames onto the clearest (then sharpest) one.

    Returns aligned frames, masks and shifts, in the input order. The reference is chosen from
    the content, so the result does not depend on the order of the frames.
    """
    if len(frames) == 1:
        return frames, masks, np.zeros((1, 2))
    rows, cols = central_window(frames.shape[1:], REGISTRATION_WINDOW)
    window_frames, window_masks = frames[:, rows, cols], masks[:, rows, cols]
    order = canonical_order(window_frames, window_masks)
    order = order[window_masks[order].any(axis=(1, 2))]  # frames with clear pixels in the window
    shifts = np.zeros((len(frames), 2))
    if len(order) > 1:
        shifts[order] = register_stack(window_frames[order], window_masks[order])
    aligned, aligned_masks = align_stack(frames, masks, shifts)
    return aligned, aligned_masks, shifts
