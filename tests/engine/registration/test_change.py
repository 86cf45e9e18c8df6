"""Pixels whose surface changed between dates are found before registering, and left out of it."""

from __future__ import annotations

import numpy as np
import pytest

from misr_engine.datasets.simulate import STRONG_CHANGE, degrade
from misr_engine.rasters.bands import read_band
from misr_engine.registration.change import changed_pixels
from misr_engine.registration.stack import register_stack
from tests.rasters import HOLDOUT_HR

FIELD = (slice(50, 80), slice(60, 90))  # LR pixels of the 140 x 140 sample


def grown(region: tuple[slice, slice], by: int) -> tuple[slice, slice]:
    return tuple(slice(max(0, s.start - by), s.stop + by) for s in region)


@pytest.fixture(scope="module")
def usable(sample_stack):
    keep = sample_stack.clear_fraction > 0
    return sample_stack.frames[keep].astype(np.float64), sample_stack.masks[keep]


def test_a_field_changed_in_some_frames_is_found_and_little_else(usable):
    """The real sample, a field raised by 1500 DN in 4 of its 8 usable frames (a harvest): the
    field is found in the frames (the temporal median sits between its two states, so every frame
    differs from it there); away from it little is, with or without the change (real dates:
    0.4% of the clear pixels differ as much without it, 0.4% away from the field with it)."""
    frames, masks = usable
    assert changed_pixels(frames, masks)[masks].mean() < 0.02
    frames = frames.copy()
    frames[[0, 2, 4, 6], FIELD[0], FIELD[1]] += 1500
    changed = changed_pixels(frames, masks)
    inner = grown(FIELD, -3)
    assert changed[:, inner[0], inner[1]][masks[:, inner[0], inner[1]]].mean() > 0.7  # measured 0.81
    away = masks.copy()
    away[:, grown(FIELD, 6)[0], grown(FIELD, 6)[1]] = False
    assert changed[away].mean() < 0.02


def test_a_strongly_changed_field_does_not_derail_the_registration():
    """Eight 9-frame stacks simulated from a real Sentinel-2 crop at 30% of its contrast (a flat
    agricultural scene), each with a field 0.8-1.5 times the level brighter or darker in 30-50% of
    the frames: registering on every clear pixel leaves 6 of the frames off by more than 0.25 LR px
    (the field's edges drown the texture's agreement, mostly when the reference frame shows it);
    with the changed pixels left out, 2."""
    hr = read_band(str(HOLDOUT_HR))[0].astype(np.float64)
    hr = hr.mean() + 0.3 * (hr - hr.mean())
    failed = 0
    for seed in range(8):
        stack = degrade(hr, 9, np.random.default_rng(seed), STRONG_CHANGE)
        error = register_stack(stack.frames, stack.masks) - stack.shifts
        error = np.abs(error - np.median(error, axis=0)).max(axis=1)
        failed += int((error[stack.masks.any(axis=(1, 2))] > 0.25).sum())
    assert failed <= 3


def test_a_high_contrast_edge_off_by_a_pixel_or_two_is_not_change():
    """Frames of a real scene shifted by up to 2 LR px against each other, nothing changed: the
    sides of its edges differ a lot pixel by pixel, but within the tolerated misregistration
    (CHANGE_REACH) they are explained, so almost nothing is flagged (a plain comparison with the
    temporal median flagged up to 27% of some test scenes and derailed their registration)."""
    from misr_engine.imaging.resample import shift_image
    scene = read_band(str(HOLDOUT_HR))[0][:216, :216].astype(np.float64).reshape(72, 3, 72, 3).mean(axis=(1, 3))
    rng = np.random.default_rng(0)
    frames = np.stack([shift_image(scene, *rng.uniform(-2, 2, 2)) for _ in range(7)])
    masks = np.ones(frames.shape, bool)
    masks[:, :3], masks[:, -3:], masks[:, :, :3], masks[:, :, -3:] = False, False, False, False  # wrapped borders
    assert changed_pixels(frames, masks)[masks].mean() < 0.01
