"""Registering a stack onto its reference frame: shifts estimated once on a central window,
frames moved by whole LR pixels only (with their masks), sub-pixel phases left to the network.

Why whole pixels: resampling aliased LR frames by a fraction of a pixel mixes their aliasing into
the content (measured on a held-out Sentinel-2 stack: the masked mean of LR-resampled frames,
bicubic x3 and Wiener-deconvolved, scores 0.85 dB cPSNR below the same pipeline resampling each
frame straight onto the HR grid). The sub-pixel remainder of every shift (``subpixel_phase``)
goes to the network, which resamples onto the HR grid itself.
"""

from __future__ import annotations

import numpy as np

from ..imaging.compositing import fill_masked
from .change import kept_shifts, steady_masks
from .reference import canonical_order, clearest_frame
from .shift import estimate_shift, onto_common_grid

REGISTRATION_WINDOW = 512
CENTRE_TRIM: float | None = 0.125
"""The output grid sits on the frames' trimmed mean position (`trimmed_centre`: this share of the
frames, and at least one, cut at each end per axis; None: their median position). It moves by
1 / (T - 2 cut) of one frame's move where the median moves by all of it whenever that frame is
the middle one, and still ignores a frame far off at either end. Chosen on validation scenes
(scripts/change_away_study.py --clips 1 --scenes 24 --centre-trims none 0.125 0.25,
docs/evaluation/change_away_centre_validation.log): a field raised in 4 of 9 frames moved the SR
elsewhere by 0.113% of the level [0.077, 0.153] against 0.169% [0.099, 0.254] on the median
(paired -0.056 [-0.108, -0.015], 17 of 24 scenes lower; 0.25: 0.179%, one scene 1.68%, a phase
flip)."""


def central_window(shape: tuple[int, int], size: int) -> tuple[slice, slice]:
    height, width = shape
    y0, x0 = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return slice(y0, y0 + min(size, height)), slice(x0, x0 + min(size, width))


def subpixel_phase(shifts: np.ndarray) -> np.ndarray:
    """The sub-pixel part of LR shifts, in [-0.5, 0.5] pixels: where a frame's samples sat
    between the reference frame's (whole-pixel shifts do not change the sampling phase)."""
    shifts = np.asarray(shifts, np.float64)
    return (shifts - np.round(shifts)).astype(np.float32)


def registration_window(shape: tuple[int, int]) -> tuple[slice, slice]:
    """The central window (rows, columns) of an (H, W) raster on which shifts are estimated."""
    return central_window(shape, REGISTRATION_WINDOW)


def estimate_shifts(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Shifts (T, 2) in LR px of (T, h, w) frames onto the clearest (then sharpest) one.

    Give the frames' `registration_window`. Frames without a clear pixel there get (0, 0).
    The reference is chosen from the content, so the result does not depend on the order.
    The engine then centres them (`centre_shifts`): the output grid is the frames' central
    position, not the reference frame's.
    """
    shifts = np.zeros((len(frames), 2))
    if len(frames) <= 1:
        return shifts
    order = canonical_order(frames, masks)
    order = order[masks[order].any(axis=(1, 2))]  # frames with clear pixels in the window
    if len(order) > 1:
        shifts[order] = register_stack(frames[order], masks[order])
    return shifts


def centre_shifts(shifts: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Shifts (T, 2) relative to the frames' central position (their trimmed mean, `CENTRE_TRIM`,
    per axis, over the frames with a clear pixel in `masks`, the window the shifts were estimated
    on) instead of the reference frame's: the output grid then depends on every frame, not on
    which one is the reference (a field that changed in some frames may make another frame the
    sharpest), and is the best estimate of the scene's true position when misregistration is random. Frames without a clear
    pixel there, which could not be registered, sit at that central position (shift 0: their own
    geolocation, the best guess when geolocation errors are random), not at the reference's,
    which a change elsewhere in the scene may swap for another."""
    shifts = np.asarray(shifts, np.float64)
    usable = np.asarray(masks, bool).reshape(len(masks), -1).any(axis=1)
    if not usable.any():
        return shifts
    centre = np.median(shifts[usable], axis=0) if CENTRE_TRIM is None else trimmed_centre(shifts[usable], CENTRE_TRIM)
    centred = shifts - centre
    centred[~usable] = 0.0
    return centred


def trimmed_centre(shifts: np.ndarray, share: float) -> np.ndarray:
    """Per axis, the mean of (T, 2) shifts without the `share` of the frames (at least one when
    there are three or more) at each end: the median of three or four frames, the mean of the
    middle seven of nine."""
    ordered = np.sort(np.asarray(shifts, np.float64), axis=0)
    count = len(ordered)
    cut = max(1, round(share * count)) if count >= 3 else 0
    return ordered[cut:count - cut].mean(axis=0)


def window_registration(frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Shifts (T, 2) onto the frames' central position (`centre_shifts`) and the reference frame
    of (T, h, w) frames cut to their `registration_window`: estimated on the clear pixels, then,
    where some changed in some frames, again without those (``change.steady_masks``), so that a
    harvested field neither pulls the shifts nor picks the reference (per frame, the pass that
    registers it better on those pixels: ``change.kept_shifts``)."""
    first = estimate_shifts(frames, masks)
    steady = steady_masks(frames, masks, first)
    same = np.array_equal(steady, masks)
    shifts = first if same else kept_shifts(frames, steady, first, estimate_shifts(frames, steady))
    return centre_shifts(shifts, masks), reference_frame(frames, steady)


def reference_frame(frames: np.ndarray, masks: np.ndarray) -> int:
    """The frame the others are registered onto: the clearest (then sharpest) with a clear pixel
    in the window given (the first frame when none has one)."""
    order = canonical_order(frames, masks)
    order = order[masks[order].any(axis=(1, 2))]
    return int(order[0]) if len(order) else 0


def whole_pixel_moves(shifts: np.ndarray) -> np.ndarray:
    """The whole-pixel part of LR shifts (T, 2), as integers: how far each frame is moved."""
    return np.round(np.asarray(shifts, np.float64)).astype(int)


def move_rows(frames: np.ndarray, masks: np.ndarray, moves: np.ndarray, top: int, rows: tuple[int, int],
              height: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows rows[0]:rows[1] of the frames moved by -`moves` (whole pixels), full width.

    `frames` and `masks` (T, n, W) hold input rows top:top + n, which must include every input
    row the moved rows come from (rows[0] + dy to rows[1] + dy, within 0:`height`)
    (`move_window` over every column).
    """
    width = frames.shape[2]
    return move_window(frames, masks, moves, (top, 0), (rows, (0, width)), (height, width))


def move_window(frames: np.ndarray, masks: np.ndarray, moves: np.ndarray, origin: tuple[int, int],
                window: tuple[tuple[int, int], tuple[int, int]],
                shape: tuple[int, int], replicate_edges: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The window (rows, columns) of the frames moved by -`moves` (whole pixels).

    `frames` and `masks` (T, n, m) hold the input pixels from row, column `origin` of (height,
    width) `shape` rasters, which must include every input pixel the window's come from (row
    + dy, column + dx, within the raster). Pixels brought in from outside the raster are not
    clear (value 0), or with `replicate_edges` copies of the raster's nearest edge pixel (as
    evidence: at a border every frame still has its say); other values are copied.
    """
    (row0, row1), (col0, col1) = window
    (top, left), (height, width) = origin, shape
    count = len(frames)
    moved = np.zeros((count, row1 - row0, col1 - col0), np.float32)
    moved_masks = np.zeros(moved.shape, bool)
    for index, (dy, dx) in enumerate(np.asarray(moves, int)):
        if replicate_edges:
            pixels = np.ix_(np.clip(np.arange(row0, row1) + dy, 0, height - 1) - top,
                            np.clip(np.arange(col0, col1) + dx, 0, width - 1) - left)
            moved[index], moved_masks[index] = frames[index][pixels], masks[index][pixels]
            continue
        source_y = (max(0, row0 + dy), min(height, row1 + dy))
        source_x = (max(0, col0 + dx), min(width, col1 + dx))
        if source_y[0] >= source_y[1] or source_x[0] >= source_x[1]:
            continue
        target = (slice(source_y[0] - dy - row0, source_y[1] - dy - row0),
                  slice(source_x[0] - dx - col0, source_x[1] - dx - col0))
        source = (slice(source_y[0] - top, source_y[1] - top), slice(source_x[0] - left, source_x[1] - left))
        moved[(index, *target)] = frames[(index, *source)]
        moved_masks[(index, *target)] = masks[(index, *source)]
    return moved, moved_masks


def register(frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Register (T,H,W) frames onto their central position (`centre_shifts`), to whole pixels.

    Returns the moved frames, masks and the full shifts (LR px; the sub-pixel part is left
    to the network), in the input order (`window_registration` on the `registration_window`,
    then `move_rows` by the whole-pixel part over all rows, as the streamed inference does per
    row).
    """
    if len(frames) == 1:
        return frames, masks, np.zeros((1, 2))
    rows, cols = registration_window(frames.shape[1:])
    window = (slice(None), rows, cols)
    shifts = window_registration(frames[window], masks[window])[0]
    height = frames.shape[1]
    aligned, aligned_masks = move_rows(frames, masks, whole_pixel_moves(shifts), 0, (0, height), height)
    return aligned, aligned_masks, shifts


def align_stack(frames: np.ndarray, masks: np.ndarray,
                shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shift every (filled) frame and its mask by -shift onto the reference grid.

    `shifts` must be in pixels of `frames` (multiply LR shifts by SCALE for HR frames).
    """
    aligned, aligned_masks = onto_common_grid(fill_masked(frames, masks), masks, shifts)
    return aligned.astype(np.float32), aligned_masks


def register_stack(frames: np.ndarray, masks: np.ndarray, upsample_factor: int = 20) -> np.ndarray:
    """Shifts (T, 2) of every frame relative to the clearest one (whose shift is (0, 0)).

    Frames without any clear pixel get a zero shift. (A second pass against the mean of the
    other aligned frames was tried: it helps only at noise levels above ~4% of the signal and
    was slightly worse on ``simulate.degrade`` stacks, for twice the time.)
    """
    frames = np.asarray(frames, np.float32)
    masks = np.asarray(masks, bool) & np.isfinite(frames)
    shifts = np.zeros((len(frames), 2))
    if len(frames) == 0:
        return shifts
    ref = clearest_frame(masks, frames)
    if not masks[ref].any():
        return shifts
    for t, (frame, mask) in enumerate(zip(frames, masks)):
        if t != ref and mask.any():
            shifts[t] = estimate_shift(frames[ref], frame, masks[ref], mask, upsample_factor)
    return shifts
