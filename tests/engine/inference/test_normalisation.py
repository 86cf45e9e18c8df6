"""The scene normalisation (``inference.normalisation``): robust units, and a spread floor from
the scene's own noise so that a low-contrast or noisy scene's noise stays within what the
network was trained on."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from misr_engine import SCALE
from misr_engine.datasets.samples import MARGIN
from misr_engine.datasets.simulate import (
    LOW_CONTRAST,
    OUT_OF_RANGE,
    central_target,
    degrade,
    with_contrast,
)
from misr_engine.evaluation.adaptation import scene_score
from misr_engine.imaging.robust import NORMAL_MAD
from misr_engine.inference import consistency, detail_gate, normalisation
from misr_engine.inference.normalisation import (
    MAX_FLOOR_STDS,
    MAX_NOISE_UNITS,
    Normalisation,
    haar_diagonal,
)
from misr_engine.inference.tiled import super_resolve
from misr_engine.rasters.bands import read_band
from misr_engine.rasters.stack import Stack
from misr_engine.resources import sample_dir

LR_SIDE = 48
CROPS = ((138, 0), (69, 69), (100, 100), (250, 100))  # HR px of the sample's reference image


def test_the_spread_of_a_textured_scene_is_its_own_and_a_noisy_flat_scene_gets_the_noise_floor(sample_stack):
    textured = Normalisation.of(sample_stack.frames, sample_stack.masks)
    clear = sample_stack.frames[sample_stack.masks].astype(np.float64)
    assert textured.spread == pytest.approx(max(1.4826 * np.median(np.abs(clear - np.median(clear))),
                                                0.5 * clear.std()), rel=1e-6)
    rng = np.random.default_rng(0)
    flat = 2000.0 + rng.normal(0.0, 40.0, size=(5, 30, 30))
    norm = Normalisation.of(flat, np.ones(flat.shape, bool))
    assert norm.spread == pytest.approx(40.0 / MAX_NOISE_UNITS, rel=0.1)
    assert norm.spread > 5 * flat.std()
    checkerboard = 2000.0 + 30.0 * (-1.0) ** np.add.outer(np.arange(30), np.arange(30))[None].repeat(5, 0)
    norm = Normalisation.of(checkerboard, np.ones(checkerboard.shape, bool))  # all its detail looks like noise
    assert norm.spread == pytest.approx(MAX_FLOOR_STDS * checkerboard.std(), rel=1e-6)


def test_the_noise_is_measured_on_clear_blocks_and_bounds_the_units():
    """A smooth ramp with white noise: the diagonal Haar estimate finds the noise whatever the
    cloudy pixels hold, and the spread keeps that noise at MAX_NOISE_UNITS of the units."""
    rng = np.random.default_rng(1)
    ramp = 2000.0 + 3.0 * np.add.outer(np.arange(60), np.arange(60))
    frames = ramp + rng.normal(0.0, 60.0, size=(6, 60, 60))
    masks = np.ones(frames.shape, bool)
    masks[:3, 10:40, 5:50] = False
    frames[~masks] = 1e6  # clouds: never part of the estimate
    noise = np.median(np.abs(haar_diagonal(frames, masks))) / NORMAL_MAD
    assert noise == pytest.approx(60.0, rel=0.05)
    norm = Normalisation.of(frames, masks)
    assert norm.spread == pytest.approx(noise / MAX_NOISE_UNITS, rel=0.01)
    assert norm.spread > 1.4826 * np.median(np.abs(frames[masks] - norm.centre))


def test_a_large_scene_is_subsampled_by_position_so_pixels_left_out_do_not_move_the_others(monkeypatch):
    """Beyond 2 x SAMPLE_LIMIT clear values the units come from a subsample fixed by position: 40
    pixels left out (a changed field's, a cloud's) change them by no more than their own share.
    Kept by order instead (every k-th clear value), they shifted every later value's turn and the
    units moved by the subsample's own noise (on 10 frames of 1024 x 1024, 0.43 DN, 0.13% of the
    spread)."""
    monkeypatch.setattr(normalisation, "SAMPLE_LIMIT", 20_000)
    rng = np.random.default_rng(2)
    ground = np.cumsum(np.cumsum(rng.normal(size=(200, 200)), 0), 1)
    frames = 1000.0 + 300.0 * (ground - ground.mean()) / ground.std() + rng.normal(0.0, 10.0, size=(8, 200, 200))
    masks = np.ones(frames.shape, bool)
    fewer = masks.copy()
    fewer.reshape(-1)[rng.choice(fewer.size, 40, replace=False)] = False
    def blocks(m):
        return ((frames[:, r:r + 50], m[:, r:r + 50]) for r in range(0, 200, 50))

    full, partial = Normalisation.of_blocks(blocks(masks)), Normalisation.of_blocks(blocks(fewer))
    every = Normalisation.of_values(frames[masks])  # no subsample
    assert abs(full.centre - every.centre) < 0.02 * every.spread  # a fair subsample
    assert abs(partial.centre - full.centre) < 1e-3 * full.spread
    assert abs(partial.spread - full.spread) < 1e-3 * full.spread
    assert abs(partial.noise - full.noise) < 1e-3 * full.noise


def test_each_frame_s_noise_is_its_own_whatever_the_blocks_of_rows():
    """Frames 5 times noisier than the others (a hazy date, another sensor) get 5 times their
    noise, measured over the clear blocks of that frame only, and within 1% the same figures
    whether the scene comes in blocks of 30 or 90 rows (a tile row's height) or whole (`of`)."""
    rng = np.random.default_rng(3)
    ramp = 2000.0 + 3.0 * np.add.outer(np.arange(90), np.arange(60))
    sigmas = np.array([10.0, 50.0, 10.0, 10.0, 50.0, 10.0])
    frames = ramp + rng.normal(0.0, 1.0, size=(6, 90, 60)) * sigmas[:, None, None]
    masks = np.ones(frames.shape, bool)
    masks[1, :60] = False
    frames[~masks] = 1e6
    phases = np.zeros((6, 2))
    by_30, by_90 = (Normalisation.of_registered(((frames[:, r:r + h], masks[:, r:r + h]) for r in range(0, 90, h)), phases)
                    for h in (30, 90))
    np.testing.assert_allclose(by_30.frame_noise, sigmas, rtol=0.1)
    np.testing.assert_allclose(by_30.frame_noise, by_90.frame_noise, rtol=0.01)  # changes found per block
    np.testing.assert_allclose(Normalisation.of(frames, masks).frame_noise, by_90.frame_noise, rtol=0.01)


def _noise_floor_gains(model, monkeypatch, conditions) -> list[float]:
    """Per crop of the sample's real 10 m image degraded under `conditions`: cPSNR with the noise
    floor minus without it."""
    hr = read_band(str(sample_dir() / "reference_hr.tif"))[0].astype(np.float64)
    side = SCALE * LR_SIDE + 2 * MARGIN
    # the network's own output: the detail gate and the back-projection after it (chosen with the
    # floor in place) are measured apart
    monkeypatch.setattr(detail_gate, "GATE_RATIOS", None)
    monkeypatch.setattr(consistency, "CONSISTENCY_STEPS", 0)
    gains = []
    for seed, (row, col) in enumerate(CROPS):
        rng = np.random.default_rng(seed)
        stack = degrade(with_contrast(hr[row:row + side, col:col + side], conditions, rng), 9, rng, conditions, MARGIN)
        target = central_target(stack.hr, stack)
        scores = []
        for bound in (MAX_NOISE_UNITS, None):
            monkeypatch.setattr(normalisation, "MAX_NOISE_UNITS", bound)
            sr = super_resolve(Stack.in_memory(stack.frames, stack.masks), model, torch.device("cpu"))[0]
            scores.append(scene_score(sr, target))
        gains.append(scores[0] - scores[1])
    return gains


@pytest.mark.slow
@pytest.mark.parametrize("conditions", [
    replace(LOW_CONTRAST, contrast=(0.1, 0.1), change_probability=0.0),
    replace(OUT_OF_RANGE, noise_fraction=(0.03, 0.04), contrast=(0.25, 0.25)),
], ids=["a tenth of the contrast, no change", "a quarter of the contrast, blurred, 3-4% noise"])
def test_the_noise_floor_raises_the_network_where_the_noise_is_beyond_its_training(shipped_model, monkeypatch,
                                                                                    conditions):
    """Crops whose noise, in the scene's own units, is beyond any training stack's: the SR with
    the noise floor against the SR without it (without, the network sharpened the noise; measured
    +0.00 to +0.38 dB per crop at a tenth of the contrast, +0.02 to +0.39 noisy at half the contrast
    with earlier weights; with those of 2026-12-07, which sharpen such noise less, +0.17,
    -0.03, -0.00, +0.01 at half the contrast, so the noisy case is now at a quarter: +0.64, +0.26,
    +0.17, +0.17). The faint crops
    have no changed field: since the units no longer count changed pixels as they are
    (normalisation.CHANGED_PIXELS), one faint crop with a field scored 0.18 dB higher without the
    floor (its units without the field: a spread of 42 DN, 105 with it); on 24 low-contrast
    validation scenes, 30% with fields, the floor still gains 1.23 dB [0.61, 2.10] (changed pixels
    left out; docs/evaluation/noise_floor_units_validation.log)."""
    gains = _noise_floor_gains(shipped_model, monkeypatch, conditions)
    assert min(gains) > -0.02 and np.mean(gains) > 0.05, f"gains of the noise floor per crop (dB): {np.round(gains, 2)}"


@pytest.mark.parametrize(("gain", "offset"), [(1e-4, 0.0), (2.75e-5, -0.2)])
def test_the_sr_follows_the_frames_units(sample_stack, shipped_model, gain, offset):
    """Frames in reflectance (floats), or in another product's scaled units with an offset, give the
    sample's SR and uncertainty in those units: nothing in the engine is tied to Sentinel-2's DN."""
    frames, masks = sample_stack.frames[:, :LR_SIDE, :LR_SIDE], sample_stack.masks[:, :LR_SIDE, :LR_SIDE]
    dn_sr, dn_scale = super_resolve(Stack.in_memory(frames, masks), shipped_model, torch.device("cpu"))
    scaled = (frames.astype(np.float64) * gain + offset).astype(np.float32)
    sr, scale = super_resolve(Stack.in_memory(scaled, masks), shipped_model, torch.device("cpu"))
    assert np.isfinite(dn_sr).mean() > 0.99 and np.array_equal(np.isnan(sr), np.isnan(dn_sr))
    moved = np.abs((sr.astype(np.float64) - offset) / gain - dn_sr)[np.isfinite(dn_sr)]  # in DN; the crop's level is ~1,700
    assert moved.mean() < 0.25 and moved.max() < 2.5  # float32 rounding of offset units: 0.08 / 1.0 DN
    assert np.allclose(scale.astype(np.float64) / gain, dn_scale, rtol=1e-3, equal_nan=True)
