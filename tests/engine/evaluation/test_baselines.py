"""Resampling conventions, registration and the classical MISR pipelines on real texture."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from misr_engine import SCALE
from misr_engine.evaluation import baselines, metrics
from misr_engine.registration.reference import canonical_order, clearest_frame
from misr_engine.registration.shift import estimate_shift
from misr_engine.registration.stack import CENTRE_TRIM, register_stack, trimmed_centre
from misr_engine.imaging.resample import downsample, forward_model, shift_image, upsample
from tests.engine.evaluation.test_metrics import hr_texture

PSF_SIGMA = 1.0  # HR px, before the 3x3 area integration
NOISE = 5e-4  # reflectance, about 1% of the signal


def simulate_stack(hr: np.ndarray, shifts: np.ndarray, psf_sigma: float = PSF_SIGMA,
                   noise: float = NOISE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """LR frames of `hr` (shift, blur, area decimation, noise) with all-clear masks."""
    rng = np.random.default_rng(seed)
    frames = np.stack([forward_model(hr, dy, dx, psf_sigma) for dy, dx in shifts])
    frames = frames + rng.normal(0, noise, frames.shape)
    return frames.astype(np.float32), np.ones(frames.shape, bool)


def random_shifts(count: int, max_shift: float, seed: int) -> np.ndarray:
    """Uniform (dy, dx) LR shifts, the first frame (the reference) unshifted."""
    shifts = np.random.default_rng(seed).uniform(-max_shift, max_shift, (count, 2))
    shifts[0] = 0.0
    return shifts


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    return hr_texture()


@pytest.fixture(scope="module")
def misregistered(hr):
    """Nine frames misregistered by up to 2 LR px, one of them 40% cloudy (bright clouds).

    Frame 0 is the only one clear everywhere (the others miss a 7 x 7 corner: 1 % of their
    pixels, what the reference choice counts in), so it is the reference: outputs sit on its
    grid, which is the HR's."""
    shifts = random_shifts(9, 2.0, seed=1)
    frames, masks = simulate_stack(hr, shifts)
    cloud = np.zeros(masks.shape[1:], bool)
    cloud[10:40, 5:45] = True
    frames[4][cloud], masks[4][cloud] = 0.6, False
    masks[1:, -7:, -7:] = False
    return frames, masks, shifts


@pytest.fixture(scope="module")
def estimated_shifts(misregistered):
    frames, masks, _ = misregistered
    return register_stack(frames, masks)


def test_upsample_follows_the_pixel_area_convention():
    ramp = np.tile(np.arange(8, dtype=np.float32), (8, 1))
    bicubic = upsample(ramp)
    assert bicubic.shape == (24, 24) and bicubic.dtype == np.float32
    np.testing.assert_allclose(bicubic[:, SCALE * np.arange(2, 6) + 1], ramp[[0] * 24, 2:6],
                               atol=1e-5)
    scipy_linear = ndimage.zoom(ramp, 3, order=1, grid_mode=True, mode="nearest")
    np.testing.assert_allclose(upsample(ramp, mode="bilinear"), scipy_linear, atol=1e-5)
    np.testing.assert_array_equal(upsample(ramp, mode="nearest")[:, :6], [[0, 0, 0, 1, 1, 1]] * 24)
    assert upsample(np.stack([ramp, ramp])).shape == (2, 24, 24)


def test_shift_image_moves_content_down_and_right(hr):
    moved = shift_image(hr, 2, 3)
    np.testing.assert_allclose(moved[2:, 3:], hr[:-2, :-3], atol=1e-6)


def test_an_lr_shift_is_three_hr_pixels(hr):
    np.testing.assert_allclose(forward_model(hr, 1, -2, 0.0)[1:-1, 2:-2],
                               downsample(hr)[:-2, 4:], atol=1e-6)


def test_estimate_shift_gives_where_the_moving_content_went(hr):
    lr = downsample(hr)
    dy, dx = estimate_shift(lr, shift_image(lr, 1.3, -0.6))
    assert (dy, dx) == pytest.approx((1.3, -0.6), abs=0.05)


def test_clearest_frame_counts_clear_pixels():
    masks = np.ones((3, 4, 4), bool)
    masks[0, 0] = False
    masks[2, :2] = False
    assert clearest_frame(masks) == 1


def test_baselines_pick_the_engines_reference_frame_among_equally_clear_ones(holdout_stack):
    """Ties in clear pixels go to the sharpest frame, in the baselines as in the engine, so
    every method's output sits on the same frame's grid (LR fidelity compares them there)."""
    from misr_engine.imaging.resample import gaussian_blur

    frames = np.stack([gaussian_blur(holdout_stack.frames[0], 1.0), holdout_stack.frames[0],
                       gaussian_blur(holdout_stack.frames[0], 0.5)])
    masks = np.ones(frames.shape, bool)
    assert clearest_frame(masks) == 0  # without frames: the first
    assert clearest_frame(masks, frames) == 1 == canonical_order(frames, masks)[0]
    for order in ([2, 1, 0], [1, 0, 2]):
        assert order[clearest_frame(masks, frames[order])] == 1


def test_register_stack_recovers_subpixel_shifts_within_a_tenth_of_a_pixel(misregistered,
                                                                          estimated_shifts):
    _, _, shifts = misregistered
    assert np.abs(estimated_shifts - shifts).max() < 0.1


def test_register_stack_trusts_geolocation_when_there_is_no_texture():
    noise = np.random.default_rng(2).normal(0.07, 0.01, (3, 48, 48)).astype(np.float32)
    np.testing.assert_array_equal(register_stack(noise, np.ones(noise.shape, bool)), 0)


def test_every_baseline_is_nan_where_no_frame_was_clear(misregistered, estimated_shifts):
    frames, masks, _ = misregistered
    masks = masks.copy()
    masks[:, 50:, 50:] = False  # LR pixels 50.. = HR pixels 150.., give or take the shifts
    for name, pipeline in baselines.BASELINES.items():
        kwargs = {} if name.startswith("bicubic") else {"shifts": estimated_shifts}
        sr = pipeline(frames, masks, **kwargs)
        assert sr.shape == (192, 192) and sr.dtype == np.float32, name
        margin = 0 if name.startswith("bicubic") else 7  # registered frames move up to 6 HR px
        assert np.isnan(sr[150 + margin:, 150 + margin:]).all(), name
        assert np.isfinite(sr[:150 - margin]).all(), name
        assert np.isfinite(sr[:, :150 - margin]).all(), name


def test_clouds_do_not_leak_into_the_mean(hr, misregistered):
    frames, masks, _ = misregistered
    clear = baselines.bicubic_masked_mean(*simulate_stack(hr, misregistered[2]))
    assert np.nanmax(np.abs(baselines.bicubic_masked_mean(frames, masks) - clear)) < 0.01


def test_registered_mean_beats_the_unregistered_mean(hr, misregistered, estimated_shifts):
    frames, masks, _ = misregistered
    unregistered = metrics.cpsnr(baselines.bicubic_masked_mean(frames, masks), hr)
    registered = metrics.cpsnr(baselines.registered_mean(frames, masks, estimated_shifts), hr)
    clearest = metrics.cpsnr(baselines.bicubic_clearest(frames, masks), hr)
    # Measured: +4.0 dB on the held-out crop, +6.1 dB on the synthetic fallback texture.
    assert registered > unregistered + 3.0
    assert registered > clearest


def test_wiener_and_ibp_restore_detail_that_the_registered_mean_blurs(hr, misregistered,
                                                                     estimated_shifts):
    frames, masks, _ = misregistered
    mean = baselines.registered_mean(frames, masks, estimated_shifts)
    wiener = baselines.registered_mean_wiener(frames, masks, shifts=estimated_shifts)
    ibp = baselines.ibp(frames, masks, shifts=estimated_shifts)
    score = {name: metrics.cpsnr(sr, hr) for name, sr in
             (("mean", mean), ("wiener", wiener), ("ibp", ibp))}
    assert score["wiener"] > score["mean"] + 1.0  # measured +2.3 dB (held-out crop)
    assert score["ibp"] > score["mean"] + 1.0  # measured +3.0 dB
    edges = {name: metrics.gradient_stratified_psnr(sr, hr)[-1] for name, sr in
             (("mean", mean), ("wiener", wiener))}
    assert edges["wiener"] > edges["mean"] + 0.3
    fidelity = {name: np.nanmean(metrics.lr_fidelity(sr, frames, masks, estimated_shifts,
                                                     PSF_SIGMA)) for name, sr in
                (("mean", mean), ("ibp", ibp))}
    assert fidelity["ibp"] > fidelity["mean"] + 2  # IBP minimises exactly this residual; the
    # LR noise (5e-4) caps it at 66 dB


def test_the_noise_weighted_mean_discounts_noisy_frames(hr, misregistered, estimated_shifts):
    """Three of the frames far noisier than the rest (hazy dates): weighing every frame by its
    inverse noise variance keeps their noise out of the mean; frames equally noisy give the
    plain registered mean."""
    frames, masks, _ = misregistered
    noisy = frames.copy()
    noisy[1:4] += np.random.default_rng(5).normal(0.0, 0.01, noisy[1:4].shape).astype(np.float32)
    score = {name: metrics.cpsnr(pipeline(noisy, masks, shifts=estimated_shifts), hr) for name, pipeline in
             (("plain", baselines.registered_mean), ("weighted", baselines.noise_weighted_mean))}
    assert score["weighted"] > score["plain"] + 0.25, score  # measured +0.51 dB (blur and registration dominate)
    same = metrics.cpsnr(baselines.noise_weighted_mean(frames, masks, shifts=estimated_shifts), hr)
    assert abs(same - metrics.cpsnr(baselines.registered_mean(frames, masks, estimated_shifts), hr)) < 0.1


def test_classical_pipelines_start_from_the_frames_the_engine_prepares(misregistered):
    """Registered by whole pixels onto the reference frame, the sub-pixel phases left, every
    frame mapped onto the frames' median radiometry: gains of 0.8-1.25 and offsets between the
    dates leave the classical outputs where the median gain and offset put them."""
    frames, masks, shifts = misregistered  # frame 0, the only one clear everywhere, is the reference
    gains = np.linspace(0.8, 1.25, len(frames))
    offsets = np.linspace(-0.01, 0.01, len(frames))  # reflectance: +-15% of the level
    gains[0], offsets[0] = 1.0, 0.0
    drifted = (frames * gains[:, None, None] + offsets[:, None, None]).astype(np.float32)
    prepared = baselines.engine_prepared(drifted, masks)
    assert prepared.reference == 0
    centred = shifts - trimmed_centre(shifts, CENTRE_TRIM)  # the output grid: the frames' central position
    np.testing.assert_allclose(prepared.phases, centred - np.round(centred), atol=0.1)
    assert np.abs(prepared.phases).max() <= 0.5
    level = float(frames[0].mean())
    # (bicubic_masked_mean is fitted on unmoved, misregistered frames: its level is within ~2%)
    for name in baselines.STRONGEST_CANDIDATES:
        pipeline = baselines.BASELINES[name]
        expected = np.median(gains) * pipeline(frames, masks) + np.median(offsets)
        difference = np.nanmean(np.abs(pipeline(drifted, masks) - expected))
        assert difference < 0.01 * level, name  # measured <= 0.5% (the median fits); without the mapping: about 8%
