"""Structuring elements of the masks' morphology (dilations of clouds and of what screening finds)."""

from __future__ import annotations

import numpy as np


def disc(radius: int) -> np.ndarray:
    """A boolean disc of `radius` pixels (the structuring element of mask dilations)."""
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius + radius
