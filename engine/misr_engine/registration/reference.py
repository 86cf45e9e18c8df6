"""The reference frame of a stack: the clearest, ties broken by sharpness (a function of the
content, not of the input order). Clear fractions count in whole percent, so that a handful of
pixels (a mask's speckle, a screened edge) does not move the reference, and sharpness is a
median over blocks, so that a change in part of the scene does not either: the reference is
what the shifts are measured against and the radiometry first fitted to."""

from __future__ import annotations

import numpy as np


SHARPNESS_BLOCK = 16
"""LR pixels: the side of the blocks whose median sharpness ranks the frames."""


def sharpness(frame: np.ndarray, mask: np.ndarray, block: int = SHARPNESS_BLOCK) -> float:
    """Median, over blocks of `block` x `block` pixels at least half clear, of the mean squared
    difference between vertically adjacent clear pixels (over the whole frame when no block
    qualifies). A median over blocks, not a mean over the frame: a field that changed in some
    frames (a harvest, a flood) sharpens those frames' edges locally, and with a mean it could
    make one of them the reference (measured on the sample: a field raised in 4 of 8 frames
    moved the reference, and the SR 20 pixels away from the field by 0.30% of the level, 0.14%
    with the reference kept)."""
    both = mask[1:, :] & mask[:-1, :]
    squared = np.where(both, np.diff(frame.astype(np.float64), axis=0) ** 2, 0.0)
    rows, cols = (n // block for n in both.shape)
    if rows and cols:
        def per_block(a: np.ndarray) -> np.ndarray:
            return a[:rows * block, :cols * block].reshape(rows, block, cols, block).sum(axis=(1, 3))
        counts = per_block(both.astype(np.float64))
        usable = counts >= block * block / 2
        if usable.any():
            return float(np.median(per_block(squared)[usable] / counts[usable]))
    return float(squared.sum() / both.sum()) if both.any() else 0.0


CLEAR_PERCENT = 100
"""Clear fractions are compared rounded to 1 / CLEAR_PERCENT."""


def frame_ranking_keys(frames: np.ndarray, masks: np.ndarray) -> list[tuple[int, float]]:
    """Sort keys of the frames, best reference first: most clear pixels (in whole percent), then sharpest."""
    masks = np.asarray(masks, bool)
    return [(-round(CLEAR_PERCENT * float(m.mean())) if m.size else 0, -sharpness(f, m))
            for f, m in zip(frames, masks)]


def clearest_frame(masks: np.ndarray, frames: np.ndarray | None = None) -> int:
    """Index of the frame with the most clear pixels; ties go to the sharpest of `frames`
    (the engine's reference frame, so baselines and metrics share it), else the first."""
    if frames is None:
        return int(np.argmax(np.asarray(masks, bool).reshape(len(masks), -1).sum(axis=1)))
    keys = frame_ranking_keys(frames, masks)
    return min(range(len(keys)), key=lambda t: keys[t])


def canonical_order(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Frame indices, clearest first, ties broken by sharpness: a function of content, not order."""
    keys = frame_ranking_keys(frames, masks)
    return np.array(sorted(range(len(frames)), key=lambda t: keys[t]), dtype=int)
