"""The consistency step's sampling in 1-D passes (models/separable_sampling.py) and its separable
blur are the operators of the network's grid_sample forms (models/sampling.py) and 2-D blur."""

from __future__ import annotations

import pytest
import torch
from misr_engine.inference.consistency import psf_kernel
from misr_engine.models import sampling, separable_sampling
from misr_engine.models.backprojection import blur, blur_separable


def _smooth(*shape: int, seed: int) -> torch.Tensor:
    """Random images with a texture like a scene's (integrated noise) and a level far from 0."""
    generator = torch.Generator().manual_seed(seed)
    return 1000.0 + torch.randn(*shape, generator=generator).cumsum(-1).cumsum(-2)


@pytest.mark.parametrize("reach", [0.5, 1.3])  # sub-pixel phases as registered, and beyond (a frame far off)
def test_resampling_and_observing_match_the_grid_forms(reach):
    generator = torch.Generator().manual_seed(int(10 * reach))
    phases = (torch.rand(2, 7, 2, generator=generator) - 0.5) * 2 * reach
    frames = _smooth(2, 7, 20, 17, seed=1)
    for mode in ("bicubic", "bilinear"):
        torch.testing.assert_close(separable_sampling.resample_at_phases(frames, phases, mode),
                                   sampling.resample_at_phases(frames, phases, mode), rtol=1e-5, atol=0.0)
    hr = _smooth(2, 1, 60, 51, seed=2)
    torch.testing.assert_close(separable_sampling.observe_at_phases(hr, phases),
                               sampling.observe_at_phases(hr, phases), rtol=1e-5, atol=0.0)


def test_the_separable_blur_is_the_2d_blur():
    image = _smooth(3, 1, 40, 33, seed=3)
    for sigma in (0.8, 2.5):
        psf = psf_kernel(sigma)
        torch.testing.assert_close(blur_separable(image, psf.sum(-1, keepdim=True)), blur(image, psf),
                                   rtol=1e-6, atol=0.0)
