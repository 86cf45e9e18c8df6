"""A stack prepared in memory as the engine prepares a scene before its network: registered
onto the frames' central position by whole pixels, the reference chosen on the registration
window, every frame mapped onto the frames' median radiometry. Training samples and the
classical baselines share it, so they see exactly what the network sees."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .change import steady_masks
from .radiometry import Radiometry, stack_radiometry
from .stack import (
    move_rows,
    reference_frame,
    registration_window,
    subpixel_phase,
    whole_pixel_moves,
    window_registration,
)


@dataclass(frozen=True)
class PreparedStack:
    """Frames moved and mapped, their masks after the move, the full shifts (T, 2; LR px, their
    sub-pixel part left to the network), the reference frame and the radiometric fits."""

    frames: np.ndarray
    masks: np.ndarray
    shifts: np.ndarray
    reference: int
    radiometry: Radiometry


def prepare_stack(frames: np.ndarray, masks: np.ndarray, shifts: np.ndarray | None = None) -> PreparedStack:
    """(T, H, W) `frames` and `masks` registered (``stack.window_registration``; or moved by the given
    `shifts`, LR px) and mapped onto the frames' median radiometry (``stack_radiometry``)."""
    window = (slice(None), *registration_window(frames.shape[1:]))
    if shifts is None:
        shifts, reference = window_registration(frames[window], masks[window])
    else:
        reference = reference_frame(frames[window], steady_masks(frames[window], masks[window], shifts))
    height = frames.shape[1]
    moved, moved_masks = move_rows(frames, masks, whole_pixel_moves(shifts), 0, (0, height), height)
    radiometry = stack_radiometry(moved, moved_masks, reference, subpixel_phase(shifts))
    return PreparedStack(radiometry.apply(moved, moved_masks), moved_masks, np.asarray(shifts), reference, radiometry)
