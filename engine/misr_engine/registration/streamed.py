"""Registration applied to a streamed stack: shifts estimated on its registration window, then
rows read window by window with every frame moved by its whole-pixel shift."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..progress import Say, counted
from ..rasters.any_stack import AnyStack
from ..rasters.in_memory import row_blocks
from .radiometry import (
    HALO,
    Radiometry,
    block_means,
    block_size,
    fit_radiometry,
    fitting_frames,
)
from .stack import (
    move_rows,
    registration_window,
    subpixel_phase,
    whole_pixel_moves,
    window_registration,
)


@dataclass
class TileRowInput:
    """What one row of tiles needs: the registered frames and clear masks of its LR rows
    row0:row0 + len(no_data) (full width), and where no frame was clear before registration."""

    row0: int
    frames: np.ndarray
    masks: np.ndarray
    no_data: np.ndarray


class RegisteredRows:
    """Reads registered rows of a stack window by window: each frame moved by its whole-pixel
    shift (`stack.move_rows`), reading only the input rows they come from, and mapped onto the
    reference frame's radiometry once `radiometry` is known (`scene_radiometry`)."""

    def __init__(self, stack: AnyStack, shifts: np.ndarray, radiometry: Radiometry | None = None):
        self.stack, self.moves, self.radiometry = stack, whole_pixel_moves(shifts), radiometry
        self.phases = subpixel_phase(shifts)
        self.reach = int(np.abs(self.moves[:, 0]).max(initial=0))

    def read(self, row0: int, row1: int) -> TileRowInput:
        """Registered rows row0:row1, and the no-data map (no frame clear before registration)."""
        height = self.stack.shape[1]
        top, bottom = max(0, row0 - self.reach), min(height, row1 + self.reach)
        frames, masks = self.stack.read_rows(top, bottom)
        moved, moved_masks = move_rows(frames, masks, self.moves, top, (row0, row1), height)
        if self.radiometry is not None:
            moved = self.radiometry.apply(moved, moved_masks)
        return TileRowInput(row0, moved, moved_masks, ~masks[:, row0 - top:row1 - top].any(axis=0))

    def blocks(self, rows: int, say: Say | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(frames, masks) of the registered stack in blocks of `rows` rows, top to bottom (`say`
        hears the share of the rows done)."""
        for row0, row1 in counted(row_blocks(self.stack.shape[1], rows), say):
            block = self.read(row0, row1)
            yield block.frames, block.masks


def stack_registration(stack: AnyStack) -> tuple[np.ndarray, int]:
    """Shifts (T, 2) of the stack's frames onto their central position (``stack.centre_shifts``),
    and the index of the reference frame they were measured against (the radiometric fits'
    reference too), estimated on the registration window only."""
    count, height, width = stack.shape
    if count <= 1:
        return np.zeros((count, 2)), 0
    rows, cols = registration_window((height, width))
    frames, masks = stack.read_rows(rows.start, rows.stop, cols.start, cols.stop)
    return window_registration(frames, masks)


def scene_radiometry(rows: RegisteredRows, reference: int, read_rows: int = 64, say: Say | None = None) -> Radiometry:
    """Every frame's gain and offset, fitted once over the whole registered scene against the
    frames' per-block median (``radiometry.fit_radiometry`` on block means of the frames on one
    grid without the change, ``radiometry.fitting_frames``, gathered row block by row block, about
    `read_rows` rows at a time), expressed against the frames' median radiometry
    (``Radiometry.centred``). `say` hears the share of the rows done."""
    count, height, width = rows.stack.shape
    if count <= 1:
        return Radiometry.identity(count)
    block = block_size(height, width)
    values, clear = [], []
    plain = RegisteredRows(rows.stack, rows.moves)
    step = block * max(1, (read_rows - 2 * HALO) // block)  # read_rows with the halo
    for row0, row1 in counted(row_blocks(height, step), say):
        top, bottom = max(0, row0 - HALO), min(height, row1 + HALO)
        read = plain.read(top, bottom)
        frames, masks = (a[:, row0 - top:row1 - top] for a in fitting_frames(read.frames, read.masks, rows.phases))
        block_values, block_clear = block_means(frames, masks, block)
        values.append(block_values)
        clear.append(block_clear)
    return fit_radiometry(np.concatenate(values, axis=1), np.concatenate(clear, axis=1), reference).centred()
