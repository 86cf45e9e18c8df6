"""The uncertainty layer stays a plausible expected error where the network meets a scene unlike
its training (``tiled.MAX_LOG_SCALE``).

A low-contrast scene (the embedded sample's real 10 m image with its contrast cut to a tenth)
with a strong surface change (a field 0.8-1.5 times the level brighter or darker in 30-50% of
the frames): without the cap the head predicted an expected absolute error of about 20,000
times the scene's level; an expected error can never be larger than the span of the values the
frames themselves take.
"""

from __future__ import annotations

import numpy as np
import torch
from misr_engine import SCALE
from misr_engine.datasets.samples import MARGIN
from misr_engine.datasets.simulate import STRONG_CHANGE, degrade
from misr_engine.inference.tiled import super_resolve
from misr_engine.rasters.bands import read_band
from misr_engine.rasters.stack import Stack
from misr_engine.resources import sample_dir

CONTRAST = 0.1
SEED = 2  # a draw whose uncapped scale reached 2e4 x the level (seeds 3: 1.9e4; 0, 1: below the level)
HR_SIDE = SCALE * 48 + 2 * MARGIN  # 48 LR px and the simulator's margin on each side


def test_on_a_low_contrast_scene_with_a_strong_change_the_uncertainty_stays_within_the_data(shipped_model):
    hr = read_band(str(sample_dir() / "reference_hr.tif"))[0][:HR_SIDE, :HR_SIDE].astype(np.float64)
    flat = hr.mean() + CONTRAST * (hr - hr.mean())
    stack = degrade(flat, 9, np.random.default_rng(SEED), STRONG_CHANGE, MARGIN)
    sr, scale = super_resolve(Stack.in_memory(stack.frames, stack.masks), shipped_model, torch.device("cpu"))
    clear = stack.frames[stack.masks]
    span = float(clear.max() - clear.min())
    assert np.all(np.isfinite(scale)) and np.all(scale > 0)
    assert float(scale.max()) < span, f"expected absolute error up to {scale.max():.3g} DN, the frames span {span:.0f} DN"
    # the SR itself is untouched by the cap: it stays within the frames' values
    assert clear.min() - 0.2 * span < float(np.nanmin(sr)) and float(np.nanmax(sr)) < clear.max() + 0.2 * span
