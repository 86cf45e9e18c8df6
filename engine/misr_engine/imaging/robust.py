"""Robust spread of pixel values: the median absolute deviation, scaled to a Gaussian's standard
deviation, which a minority of outliers (clouds missed by the masks, a changed field) does not move."""

from __future__ import annotations

import numpy as np

NORMAL_MAD = 0.6745
"""The median absolute deviation of a standard normal (Phi^-1(3/4)), in standard deviations."""
MAD_TO_STD = 1.4826
"""A Gaussian's standard deviation over its median absolute deviation: 1 / NORMAL_MAD, to the
four decimals the engine's registration and radiometry have always used."""


def robust_std(values: np.ndarray) -> float:
    """Median absolute deviation of `values` from their median, scaled to a Gaussian's standard
    deviation (0 for no values)."""
    return float(MAD_TO_STD * np.median(np.abs(values - np.median(values)))) if values.size else 0.0
