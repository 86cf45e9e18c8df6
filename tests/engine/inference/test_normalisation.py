"""The scene normalisation (``inference.normalisation``): robust units, and a spread floor so
that a low-contrast scene's noise stays within what the network was trained on."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from misr_engine import SCALE
from misr_engine.datasets.samples import MARGIN
from misr_engine.datasets.simulate import LOW_CONTRAST, degrade, with_contrast
from misr_engine.evaluation.adaptation import scene_score
from misr_engine.inference import normalisation
from misr_engine.inference.normalisation import (
    MAX_FLOOR_STDS,
    MIN_RELATIVE_SPREAD,
    Normalisation,
)
from misr_engine.inference.tiled import super_resolve
from misr_engine.rasters.bands import read_band
from misr_engine.rasters.stack import Stack
from misr_engine.resources import sample_dir

LR_SIDE = 48
CROPS = ((138, 0), (69, 69), (100, 100), (250, 100))  # HR px of the sample's reference image


def test_the_spread_of_a_textured_scene_is_its_own_and_a_flat_scene_gets_the_floor(sample_stack):
    textured = Normalisation.of(sample_stack.frames, sample_stack.masks)
    clear = sample_stack.frames[sample_stack.masks].astype(np.float64)
    assert textured.spread == pytest.approx(max(1.4826 * np.median(np.abs(clear - np.median(clear))),
                                                0.5 * clear.std()), rel=1e-6)
    assert textured.spread > MIN_RELATIVE_SPREAD * textured.centre
    rng = np.random.default_rng(0)
    flat = 2000.0 + rng.normal(0.0, 40.0, size=(5, 30, 30))
    norm = Normalisation.of(flat, np.ones(flat.shape, bool))
    assert norm.spread == pytest.approx(MIN_RELATIVE_SPREAD * norm.centre)
    faint = 2000.0 + rng.normal(0.0, 4.0, size=(5, 30, 30))  # the floor stops at MAX_FLOOR_STDS deviations
    norm = Normalisation.of(faint, np.ones(faint.shape, bool))
    assert norm.spread == pytest.approx(MAX_FLOOR_STDS * faint.std(), rel=1e-6)


@pytest.mark.slow
def test_the_floor_raises_the_network_on_low_contrast_scenes(shipped_model, monkeypatch):
    """Crops of the sample's real 10 m image with a tenth of their contrast, noise relative to
    the level: the SR with the floor against the SR with the spread from the scene alone (the
    network then sharpened the noise; measured +0.08 to +0.41 dB per crop)."""
    hr = read_band(str(sample_dir() / "reference_hr.tif"))[0].astype(np.float64)
    conditions = replace(LOW_CONTRAST, contrast=(0.1, 0.1))
    side = SCALE * LR_SIDE + 2 * MARGIN
    gains = []
    for seed, (row, col) in enumerate(CROPS):
        rng = np.random.default_rng(seed)
        stack = degrade(with_contrast(hr[row:row + side, col:col + side], conditions, rng), 9, rng, conditions, MARGIN)
        target = stack.hr * np.median(stack.gains) + np.median(stack.offsets)
        scores = []
        for floor in (MIN_RELATIVE_SPREAD, 0.0):
            monkeypatch.setattr(normalisation, "MIN_RELATIVE_SPREAD", floor)
            sr = super_resolve(Stack.in_memory(stack.frames, stack.masks), shipped_model, torch.device("cpu"))[0]
            scores.append(scene_score(sr, target))
        gains.append(scores[0] - scores[1])
    assert min(gains) > -0.02 and np.mean(gains) > 0.15, f"gains of the floor per crop (dB): {np.round(gains, 2)}"
