"""The reference frame of a stack: the clearest, ties broken by sharpness (a function of the
content, not of the input order). Clear fractions count in whole percent, so that a handful of
pixels (a mask's speckle, a screened edge) does not move the reference, and with it the SR's
sub-pixel position."""

from __future__ import annotations

import numpy as np


def sharpness(frame: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared difference between vertically adjacent clear pixels."""
    both = mask[1:, :] & mask[:-1, :]
    differences = np.diff(frame.astype(np.float64), axis=0)[both]
    return float(np.mean(differences ** 2)) if differences.size else 0.0


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
