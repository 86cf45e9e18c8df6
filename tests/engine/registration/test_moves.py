"""Moving frames by their whole-pixel registration shifts, window by window (what streamed
inference and the screening read): any window is that window of the whole raster moved."""

from __future__ import annotations

import numpy as np

from misr_engine.registration.stack import move_rows, move_window


def test_a_moved_window_is_that_window_of_the_whole_moved_raster(sample_stack):
    frames, masks = sample_stack.frames, sample_stack.masks
    height, width = frames.shape[1:]
    moves = np.array([[2, -3], [0, 0], [-1, 4], [5, 1], [-4, -2], [0, 3], [1, -1], [3, 0], [-2, 2]])[:len(frames)]
    whole, whole_masks = move_rows(frames, masks, moves, 0, (0, height), height)
    for (row0, row1), (col0, col1) in [((0, 20), (0, 30)), ((50, 77), (100, 140)), ((130, 140), (7, 9))]:
        top, left = max(0, row0 - 5), max(0, col0 - 4)  # the input the window comes from, and no more
        window = (slice(None), slice(top, min(height, row1 + 5)), slice(left, min(width, col1 + 4)))
        moved, moved_masks = move_window(frames[window], masks[window], moves, (top, left),
                                         ((row0, row1), (col0, col1)), (height, width))
        np.testing.assert_array_equal(moved, whole[:, row0:row1, col0:col1])
        np.testing.assert_array_equal(moved_masks, whole_masks[:, row0:row1, col0:col1])
    assert not whole_masks[2, :, -4:].any() and not whole_masks[3, -5:].any()  # brought in from outside: not clear
    np.testing.assert_array_equal(whole[3, :-5, :-1], frames[3, 5:, 1:])
