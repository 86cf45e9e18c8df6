"""Scene-level affine normalisation of a stack: what the network's inputs and outputs are relative to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

@dataclass(frozen=True)
class Normalisation:
    """Scene-level affine normalisation: network units = (value - centre) / spread."""

    centre: float
    spread: float

    @classmethod
    def of(cls, frames: np.ndarray, masks: np.ndarray) -> "Normalisation":
        """Mean and standard deviation of all clear pixels (spread never zero).

        Accumulated frame by frame in float64: no copy of the whole stack's clear pixels.
        """
        return cls.of_blocks(zip(frames, masks))

    @classmethod
    def of_blocks(cls, blocks: Iterable[tuple[np.ndarray, np.ndarray]]) -> "Normalisation":
        """`of` over (frames, masks) blocks that together make the stack, one block at a time.

        Each block's count, mean and sum of squared deviations (float64) are merged into the
        running ones (Chan et al.), so the result is that of all the pixels at once.
        """
        count, centre, squares = 0, 0.0, 0.0
        for frames, masks in blocks:
            values = np.asarray(frames)[np.asarray(masks, bool)].astype(np.float64)
            if values.size == 0:
                continue
            mean = float(values.mean())
            delta, total = mean - centre, count + values.size
            squares += float(np.square(values - mean).sum()) + delta * delta * count * values.size / total
            centre += delta * values.size / total
            count = total
        if count == 0:
            return cls(0.0, 1.0)
        spread = (squares / count) ** 0.5
        return cls(centre, spread if spread > 1e-6 * max(1.0, abs(centre)) else max(1.0, abs(centre)) * 1e-3)

    def apply(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Normalised frames with cloudy pixels set to 0 (the scene mean)."""
        return np.where(masks, (frames - self.centre) / self.spread, 0.0).astype(np.float32)
