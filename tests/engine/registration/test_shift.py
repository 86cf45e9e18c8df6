"""Sub-pixel shifts on real texture, also when the surface changed between the dates."""

from __future__ import annotations

import numpy as np

from misr_engine.imaging.resample import shift_image
from misr_engine.registration.shift import estimate_shift
from tests.rasters import HOLDOUT_HR


def real_scene() -> np.ndarray:
    from misr_engine.rasters.bands import read_band
    image = read_band(str(HOLDOUT_HR))[0][:216, :216].astype(np.float64)
    return image.reshape(72, 3, 72, 3).mean(axis=(1, 3))  # a real 30 m scene, 72 x 72


def test_a_field_changed_in_the_moving_frame_does_not_pull_the_shift():
    """A plain least-squares polish moved the shift by about 0.1 px toward the field's edges;
    the robust (Cauchy) polish treats the changed field as outliers."""
    scene = real_scene()
    true = (0.37, -0.61)
    moving = shift_image(scene, *true)
    moving[25:45, 20:40] += 1500  # a harvest between the dates
    clear = np.ones(scene.shape, bool)
    dy, dx = estimate_shift(scene, moving, clear, clear)
    unchanged = estimate_shift(scene, shift_image(scene, *true), clear, clear)
    assert max(abs(dy - unchanged[0]), abs(dx - unchanged[1])) < 0.02, ((dy, dx), unchanged)
    assert max(abs(dy - true[0]), abs(dx - true[1])) < 0.05
