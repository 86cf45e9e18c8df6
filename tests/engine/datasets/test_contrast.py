"""The low-contrast evaluation conditions (``simulate.LOW_CONTRAST``, `misr evaluate`'s
low_contrast set): the scene keeps its level and loses contrast, the noise stays relative to the
level, and every other set's scenes stay the same draws."""

from __future__ import annotations

import numpy as np

from misr_engine.datasets.simulate import LOW_CONTRAST, TRAINING, Degradation, degrade, with_contrast
from misr_engine.rasters.bands import read_band
from misr_engine.resources import sample_dir


def real_image() -> np.ndarray:
    return read_band(str(sample_dir() / "reference_hr.tif"))[0][:168, :168].astype(np.float64)


def test_default_conditions_leave_the_scene_and_the_random_stream_untouched():
    hr, rng, untouched = real_image(), np.random.default_rng(5), np.random.default_rng(5)
    assert with_contrast(hr, Degradation(), rng) is hr
    assert rng.random() == untouched.random()


def test_low_contrast_keeps_the_level_and_scales_the_contrast_within_its_range():
    hr = real_image()
    for seed in range(5):
        low = with_contrast(hr, LOW_CONTRAST, np.random.default_rng(seed))
        assert abs(low.mean() - hr.mean()) < 1e-6 * hr.mean()
        factor = low.std() / hr.std()
        assert LOW_CONTRAST.contrast[0] <= factor <= LOW_CONTRAST.contrast[1]
        np.testing.assert_allclose(low - low.mean(), factor * (hr - hr.mean()), atol=1e-6 * hr.mean())


def test_low_contrast_frames_carry_as_much_noise_but_less_detail():
    hr = real_image()
    plain = degrade(hr, 4, np.random.default_rng(0), Degradation(cloud_probability=0.0, change_probability=0.0))
    low = with_contrast(hr, LOW_CONTRAST, np.random.default_rng(0))
    faint = degrade(low, 4, np.random.default_rng(0), Degradation(cloud_probability=0.0, change_probability=0.0))
    assert faint.frames.std() < 0.5 * plain.frames.std()
    assert abs(faint.frames.mean() - plain.frames.mean()) < 0.02 * plain.frames.mean()


def test_training_conditions_scale_the_contrast_of_only_their_share_of_the_stacks():
    hr = real_image()
    factors = [with_contrast(hr, TRAINING, np.random.default_rng(seed)).std() / hr.std() for seed in range(200)]
    scaled = [f for f in factors if abs(f - 1.0) > 1e-9]
    assert abs(len(scaled) / len(factors) - TRAINING.contrast_probability) < 0.1
    assert min(scaled) >= TRAINING.contrast[0] and max(scaled) <= TRAINING.contrast[1]
