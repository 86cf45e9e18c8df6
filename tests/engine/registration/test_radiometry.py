"""Radiometric normalisation: one robust gain and offset per frame, for the whole scene."""

from __future__ import annotations

import numpy as np

from misr_engine.registration.radiometry import Radiometry, robust_line, stack_radiometry
from misr_engine.registration.stack import centre_shifts
from tests.rasters import HOLDOUT_HR


def real_texture() -> np.ndarray:
    from misr_engine.rasters.bands import read_band
    image = read_band(str(HOLDOUT_HR))[0][:192, :192]
    return image.reshape(64, 3, 64, 3).mean(axis=(1, 3))  # a real 30 m scene, 64 x 64


def test_a_robust_line_ignores_a_changed_minority():
    rng = np.random.default_rng(0)
    x = rng.uniform(100, 3000, 4000)
    y = 1.08 * x - 40 + rng.normal(0, 5, x.size)
    y[:600] += 1500  # 15% of the blocks changed: not radiometry
    gain, offset = robust_line(x, y)
    assert abs(gain - 1.08) < 0.01 and abs(offset + 40) < 10


def test_frames_are_mapped_onto_the_frames_median_radiometry_and_a_changed_field_stays():
    scene = real_texture().astype(np.float64)
    gains, offsets = np.array([1.0, 0.9, 1.12, 1.05, 0.95]), np.array([0.0, 35.0, -60.0, 10.0, 20.0])
    frames = np.stack([g * scene + o for g, o in zip(gains, offsets)])
    frames[1:3, 20:40, 20:40] += 1200  # a field changed in two frames
    masks = np.ones(frames.shape, bool)
    mapped = stack_radiometry(frames.astype(np.float32), masks, reference=0).apply(frames, masks)
    level = np.median(gains) * scene + np.median(offsets)
    outside = np.ones(scene.shape, bool)
    outside[20:40, 20:40] = False
    assert np.abs(mapped[:, outside] - level[outside]).max() < 0.01 * level.mean()
    assert (mapped[1:3, 25:35, 25:35] - level[25:35, 25:35]).mean() > 1000  # the change is kept


def test_the_centred_radiometry_does_not_depend_on_the_reference():
    scene = real_texture().astype(np.float64)
    frames = np.stack([g * scene + o for g, o in ((1.0, 0.0), (0.9, 30.0), (1.1, -20.0))]).astype(np.float32)
    masks = np.ones(frames.shape, bool)
    one, other = (stack_radiometry(frames, masks, reference) for reference in (0, 2))
    np.testing.assert_allclose(one.apply(frames, masks), other.apply(frames, masks), rtol=1e-4, atol=0.05)


def test_identity_radiometry_changes_nothing_but_cloudy_pixels():
    frames = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    masks = frames > 3
    np.testing.assert_array_equal(Radiometry.identity(1).apply(frames, masks), np.where(masks, frames, 0))


def test_shifts_are_centred_on_the_frames_median_position_whatever_the_reference():
    shifts_from_a = np.array([[0.0, 0.0], [0.4, -1.2], [1.1, 0.3], [-0.2, 0.5]])
    shifts_from_c = shifts_from_a - shifts_from_a[2]  # the same frames measured against frame 2
    masks = np.ones((4, 5, 5), bool)
    np.testing.assert_allclose(centre_shifts(shifts_from_a, masks), centre_shifts(shifts_from_c, masks))
