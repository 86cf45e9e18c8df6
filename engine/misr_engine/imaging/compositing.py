"""Temporal compositing of a stack of frames with clear masks."""

from __future__ import annotations

import numpy as np


def masked_mean(frames: np.ndarray, masks: np.ndarray,
                weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean over clear frames (NaN where none is clear), each frame of (T, H, W)
    weighted by `weights` (T,) when given (positive), and the any-clear map."""
    masks = np.asarray(masks, bool) & np.isfinite(frames)
    per_frame = np.ones(len(masks)) if weights is None else np.asarray(weights, np.float64)
    count = (masks * per_frame[:, None, None]).sum(axis=0)
    total = np.where(masks, frames * per_frame[:, None, None], 0.0).sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (total / count).astype(np.float32)
    return mean, count > 0


def fill_masked(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Frames with cloudy pixels replaced by the temporal masked mean (else the clear mean).

    Interpolating the filled frames then spreads plausible values, not cloud, near cloud edges.
    """
    mean, any_clear = masked_mean(frames, masks)
    if any_clear.any():
        mean = np.where(any_clear, mean, mean[any_clear].mean())
    else:
        mean = np.zeros_like(mean)
    clear = np.asarray(masks, bool) & np.isfinite(frames)
    return np.where(clear, frames, mean[None]).astype(np.float32)
