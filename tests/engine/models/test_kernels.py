"""The constrained PIUnet keeps its physics by construction, whatever its weights: the PSF and
the back-projection kernels are non-negative, sum to one and are centred; the deconvolution
keeps the level (DC gain one) and does not shift."""

from __future__ import annotations

import torch

from misr_engine.models.kernels import PointSpreadFunction, UnitGainFilter
from misr_engine.models.piunet import PIUnet, PIUnetConfig

CONSTRAINED = dict(n_feat=8, n_tefa=1, bottleneck=2, phase_inputs=True, deconv_kernel=9, backprojection_steps=3,
                   constrained=True)


def centroid(kernel: torch.Tensor) -> torch.Tensor:
    size = kernel.shape[-1]
    axis = torch.arange(size, dtype=kernel.dtype) - size // 2
    total = kernel.sum(dim=(-2, -1))
    return torch.stack([(kernel.sum(-1) * axis).sum(-1) / total, (kernel.sum(-2) * axis).sum(-1) / total], dim=-1)


def scramble(module: torch.nn.Module, seed: int = 0) -> None:
    """Random weights, far from any initialisation: what training could do."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(3 * torch.randn(parameter.shape, generator=generator))


def test_point_spread_functions_stay_valid_for_any_logits():
    psf = PointSpreadFunction(torch.full((1, 1, 9, 9), 1 / 81), count=4)
    scramble(psf)
    kernels = psf()
    assert (kernels >= 0).all()
    torch.testing.assert_close(kernels.sum(dim=(-2, -1)), torch.ones(4, 1))
    assert centroid(kernels).abs().max() < 1e-5


def test_a_unit_gain_filter_keeps_the_level_and_the_position_for_any_weights():
    deconvolution = UnitGainFilter(torch.full((1, 1, 9, 9), 1 / 81))
    scramble(deconvolution, seed=1)
    kernel = deconvolution.kernel()
    torch.testing.assert_close(kernel.sum(), torch.tensor(1.0))
    flat = torch.full((1, 1, 20, 20), 7.0)
    torch.testing.assert_close(deconvolution(flat), flat)  # DC gain one: a flat image is unchanged
    torch.testing.assert_close(kernel, kernel.flip(-1, -2))  # point symmetric: no shift


def test_the_constrained_piunet_kernels_stay_physical_after_any_update():
    model = PIUnet(PIUnetConfig(**CONSTRAINED))
    scramble(model)
    psf, filters = model.backprojection.kernels()
    assert (psf >= 0).all() and (filters >= 0).all()
    torch.testing.assert_close(psf.sum(), torch.tensor(1.0))
    torch.testing.assert_close(filters.sum(dim=(-2, -1)), torch.ones(3, 1))
    assert centroid(psf).abs().max() < 1e-5 and centroid(filters).abs().max() < 1e-5
    torch.testing.assert_close(model.deconvolution.kernel().sum(), torch.tensor(1.0))


def test_the_unconstrained_kernels_can_drift_as_the_first_weights_did():
    """The guard of the tests above: without `constrained` nothing holds the PSF's sum."""
    model = PIUnet(PIUnetConfig(**{**CONSTRAINED, "constrained": False}))
    scramble(model)
    psf, _ = model.backprojection.kernels()
    assert abs(float(psf.detach().sum()) - 1.0) > 0.1
