"""cPSNR / cSSIM (official Proba-V definition), stratified and LR-fidelity scores, uncertainty."""

from __future__ import annotations


import numpy as np
import pytest
from scipy import ndimage

from misr_engine.evaluation import metrics
from misr_engine.imaging.resample import forward_model, gaussian_blur
from tests.rasters import HOLDOUT_HR

REFLECTANCE_SCALE = 10000.0  # Sentinel-2 digital numbers per unit reflectance


def hr_texture(size: int = 192) -> np.ndarray:
    """A real Sentinel-2 crop in reflectance (float32), or a smooth synthetic texture without it."""
    if HOLDOUT_HR.exists():
        from osgeo import gdal
        image = gdal.Open(str(HOLDOUT_HR)).ReadAsArray().astype(np.float32) / REFLECTANCE_SCALE
        return np.ascontiguousarray(image[:size, :size])
    rng = np.random.default_rng(0)
    layers = [ndimage.gaussian_filter(rng.standard_normal((size, size)), s) for s in (1.5, 5, 20)]
    texture = sum(layer / layer.std() * w for layer, w in zip(layers, (0.3, 0.5, 1.0)))
    return (0.07 + 0.01 * texture).astype(np.float32)


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    return hr_texture()


def test_cpsnr_of_an_image_against_itself_is_infinite(hr):
    assert metrics.cpsnr(hr, hr) == np.inf


def test_cpsnr_compensates_a_two_pixel_shift_and_a_brightness_offset(hr):
    sr = np.roll(hr, (2, -2), axis=(0, 1)) + 0.05  # wrapped rows fall in the cropped border
    best = metrics.best_alignment(sr, hr)
    assert best.offset == (1, 5)
    assert best.bias == pytest.approx(-0.05, abs=1e-6)
    assert metrics.cpsnr(sr, hr) > 100


def test_the_level_error_is_the_bias_cpsnr_forgives(hr):
    """A copy raised by 5% of the level scores as if perfect in cPSNR (its bias removed) but is 5% off
    in level; masked target pixels and NaN SR pixels do not count."""
    brighter = hr + 0.05 * float(np.mean(hr, dtype=np.float64))
    assert metrics.cpsnr(brighter, hr) > 100
    assert metrics.level_error(brighter, hr) == pytest.approx(5.0, rel=1e-4)
    assert metrics.level_error(hr, hr) == 0.0
    spoiled, mask = brighter.copy(), np.ones(hr.shape, bool)
    spoiled[:20] = np.nan
    mask[-20:] = False
    spoiled[-20:] = 100.0  # under the mask
    rise = 0.05 * float(np.mean(hr, dtype=np.float64))
    counted = float(np.mean(hr[20:-20], dtype=np.float64))  # rows neither NaN in the SR nor masked
    assert metrics.level_error(spoiled, hr, mask) == pytest.approx(100 * rise / counted, rel=1e-4)


@pytest.mark.parametrize("shift", [(3, 3), (-3, 3), (3, -3), (-3, -3), (0, 3)])
def test_cpsnr_tries_all_49_positions(hr, shift):
    assert metrics.cpsnr(np.roll(hr, shift, axis=(0, 1)), hr) == np.inf


def test_cpsnr_does_not_search_beyond_the_border(hr):
    assert metrics.cpsnr(np.roll(hr, (4, 0), axis=(0, 1)), hr) < 60


def test_cpsnr_of_gaussian_noise_is_minus_20_log10_of_its_std(hr):
    std = 0.01
    noisy = hr + np.random.default_rng(1).normal(0, std, hr.shape).astype(np.float32)
    assert metrics.cpsnr(noisy, hr) == pytest.approx(-20 * np.log10(std), abs=0.1)


def test_cpsnr_scales_with_the_data_range(hr):
    noisy = hr + np.random.default_rng(2).normal(0, 0.01, hr.shape).astype(np.float32)
    assert metrics.cpsnr(noisy * 100, hr * 100, data_range=100.0) == pytest.approx(
        metrics.cpsnr(noisy, hr), abs=1e-3)


def test_cpsnr_excludes_masked_hr_pixels_and_nan_sr_pixels(hr):
    broken = hr.copy()
    broken[40:90, 60:120] = 1.0
    hr_mask = np.ones(hr.shape, bool)
    hr_mask[30:100, 50:130] = False  # covers the broken block at every one of the 49 crops
    assert metrics.cpsnr(broken, hr, hr_mask) == np.inf
    with_nan = np.where(broken == 1.0, np.nan, broken)
    assert metrics.cpsnr(with_nan, hr) == np.inf
    assert np.isnan(metrics.cpsnr(hr, hr, np.zeros(hr.shape, bool)))


def test_cssim_is_one_for_a_shifted_offset_copy_and_drops_with_noise(hr):
    assert metrics.cssim(np.roll(hr, (1, 2), axis=(0, 1)) - 0.02, hr) == pytest.approx(1.0, abs=1e-6)
    noise = np.random.default_rng(3).normal(0, 1, hr.shape).astype(np.float32)
    slightly, strongly = (metrics.cssim(hr + std * noise, hr) for std in (0.002, 0.01))
    assert 1.0 - 1e-3 > slightly > strongly + 0.01


def test_best_alignment_error_map_is_nan_outside_the_clear_area(hr):
    hr_mask = np.ones(hr.shape, bool)
    hr_mask[:50] = False
    best = metrics.best_alignment(hr + 0.01, hr, hr_mask)
    assert best.offset == (3, 3)
    assert np.isnan(best.error[:40]).all()
    assert np.nanmax(np.abs(best.error)) < 1e-6


def test_gradient_stratified_psnr_puts_edge_errors_in_the_top_bin(hr):
    rng = np.random.default_rng(4)
    uniform = hr + rng.normal(0, 0.01, hr.shape).astype(np.float32)
    assert metrics.gradient_stratified_psnr(uniform, hr) == pytest.approx([40, 40, 40], abs=0.3)
    fields = hr + np.where(np.arange(hr.shape[1]) < 96, 0.0, 0.05).astype(np.float32)
    flat, middle, edges = metrics.gradient_stratified_psnr(gaussian_blur(fields, 2.0), fields)
    assert edges < min(flat, middle) - 3  # blur errs on the field boundary


def test_lr_fidelity_is_perfect_for_the_true_image_and_drops_for_a_blurred_one(hr):
    shifts = np.array([[0.0, 0.0], [0.4, -0.7], [-1.2, 0.3]])
    frames = np.stack([forward_model(hr, dy, dx, 1.0) for dy, dx in shifts]).astype(np.float32)
    masks = np.ones(frames.shape, bool)
    masks[1, :20] = False
    exact = metrics.lr_fidelity(hr, frames, masks, shifts, psf_sigma=1.0)
    assert exact.shape == (3,) and (exact > 100).all()
    blurred = metrics.lr_fidelity(gaussian_blur(hr, 2.0), frames, masks, shifts, psf_sigma=1.0)
    assert (blurred < exact - 20).all()
    masks[2] = False
    assert np.isnan(metrics.lr_fidelity(hr, frames, masks, shifts, psf_sigma=1.0)[2])


@pytest.fixture(scope="module")
def errors() -> np.ndarray:
    return np.abs(np.random.default_rng(5).laplace(0, 1, 10000))


def test_sparsification_of_a_perfect_uncertainty_is_the_oracle(errors):
    curve = metrics.sparsification_curve(errors, 3 * errors + 1)
    oracle = metrics.oracle_sparsification_curve(errors)
    np.testing.assert_allclose(curve, oracle)
    assert curve[0] == pytest.approx(errors.mean())
    assert (np.diff(oracle) <= 1e-12).all()
    assert metrics.ause(errors, 3 * errors + 1) == pytest.approx(0.0, abs=1e-12)


def test_ause_is_positive_for_an_uninformative_uncertainty(errors):
    random_uncertainty = np.random.default_rng(6).random(errors.shape)
    assert metrics.ause(errors, random_uncertainty) > 0.3
    assert metrics.ause(errors, random_uncertainty) < metrics.ause(errors, -errors)


def test_spearman_ranks_and_ignores_nan(errors):
    assert metrics.spearman(np.sqrt(errors), errors) == pytest.approx(1.0)
    assert metrics.spearman(-errors, errors) == pytest.approx(-1.0)
    with_nan = errors.copy()
    with_nan[:10] = np.nan
    assert metrics.spearman(with_nan, errors) == pytest.approx(1.0)


def test_laplace_calibration_matches_nominal_for_laplace_errors():
    rng = np.random.default_rng(7)
    scale = rng.uniform(0.5, 2.0, 200000)
    error = rng.laplace(0, scale)
    nominal, observed = metrics.laplace_calibration(error, scale)
    np.testing.assert_allclose(observed, nominal, atol=0.01)
    _, overconfident = metrics.laplace_calibration(error, scale / 2)
    assert (overconfident < nominal - 0.05).all()
