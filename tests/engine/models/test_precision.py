"""Mixed precision (bf16/fp16 autocast, as a GPU training or `--precision` runs) must not move
the sampling grids: they are built and used in float32 whatever the autocast (on the CPU,
torch's autocast supports bfloat16, so this is tested without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from misr_engine.models.sampling import observe_at_phases, resample_at_phases


def smooth_image(size: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.standard_normal((size, size)), 2.0)
    return torch.from_numpy((image / image.std()).astype(np.float32))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_observing_a_low_precision_sr_at_the_phases_is_where_float32_puts_it(dtype):
    """A 384-pixel HR tile (a 128-pixel LR tile) observed at sub-pixel phases: the result may
    differ by the rounding of the values (~1% in bf16), not by a grid several pixels off."""
    hr = smooth_image(384)[None, None]
    phases = torch.tensor([[[0.31, -0.22], [-0.47, 0.12], [0.05, 0.49]]])
    reference = observe_at_phases(hr, phases)
    with torch.autocast("cpu", dtype=dtype):
        low = observe_at_phases(hr.to(dtype), phases.to(dtype))
    error = (low.float() - reference).abs()
    assert float(error.max()) < 0.05, float(error.max())  # units of the image's standard deviation


def test_resampling_low_precision_frames_onto_the_hr_grid_matches_float32():
    frames = smooth_image(128, 1)[None, None].repeat(1, 2, 1, 1)
    phases = torch.tensor([[[0.4, -0.3], [-0.45, 0.2]]])
    reference = resample_at_phases(frames, phases, "bicubic")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = resample_at_phases(frames.bfloat16(), phases.bfloat16(), "bicubic")
    assert float((low.float() - reference).abs().max()) < 0.05
