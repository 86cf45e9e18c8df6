"""Learned iterative back-projection: the SR is made consistent with every clear LR frame.

Irani & Peleg's IBP (``evaluation.baselines.ibp``), unrolled for a fixed number of steps with
learnable parts: each step blurs the current SR with a learnable PSF, observes it at every
frame's sub-pixel phase (``sampling.observe_at_phases``), and adds the clear-weighted mean of
the residuals, resampled back onto the HR grid and filtered by a learnable kernel, times a
learnable step. Initialised as IBP (Gaussian PSF, identity filter, step 1), it needs no training
to help.

With `constrained` (the physics held by construction): the PSF is non-negative, sums to one and
is centred, and so are the back-projection kernels (``kernels.PointSpreadFunction``); the frames
arrive in the reference frame's radiometry (fitted once per scene, before tiling:
``registration.radiometry``), so no gain or offset is fitted here and a real change of the
surface stays in the residuals instead of passing for radiometry. Without it (the first trained
weights): a free PSF and free filters, and each frame's gain and offset fitted per tile.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..imaging.mtf import ENGINE_PSF_SIGMA
from .kernels import PointSpreadFunction
from .sampling import masked_temporal_mean, observe_at_phases, resample_at_phases

PSF_SIGMA = ENGINE_PSF_SIGMA  # initial Gaussian PSF (HR px), as ``baselines.IBP_SIGMA``
PSF_SIZE = 9
FILTER_SIZE = 5
GAIN_RANGE = (0.5, 2.0)


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """A normalised `size` x `size` isotropic Gaussian kernel."""
    axis = np.arange(size) - size // 2
    profile = np.exp(-0.5 * (axis / sigma) ** 2)
    kernel = np.outer(profile, profile)
    return (kernel / kernel.sum()).astype(np.float32)


def blur(image: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) image convolved with a (1,1,K,K) PSF, replicate-padded to the same size."""
    return F.conv2d(F.pad(image, [psf.shape[-1] // 2] * 4, mode="replicate"), psf)


def blur_separable(image: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """`blur` by the PSF column x column^T (a (1,1,K,1) `column`, e.g. a Gaussian's profile): a
    column pass, then a row pass (2K instead of K^2 multiply-adds per pixel)."""
    padded = F.pad(image, [column.shape[-2] // 2] * 4, mode="replicate")
    return F.conv2d(F.conv2d(padded, column), column.transpose(-1, -2))


def gain_and_offset(frames: torch.Tensor, observed: torch.Tensor,
                    masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame (..., H, W), the least-squares fit frame = gain * observed + offset on its
    clear pixels, the gain clamped to GAIN_RANGE; each shaped (..., 1, 1)."""
    count = masks.sum(dim=(-2, -1), keepdim=True).clamp(min=1.0)
    mean_obs = (masks * observed).sum(dim=(-2, -1), keepdim=True) / count
    mean_frame = (masks * frames).sum(dim=(-2, -1), keepdim=True) / count
    centred_obs = masks * (observed - mean_obs)
    covariance = (centred_obs * (frames - mean_frame)).sum(dim=(-2, -1), keepdim=True)
    variance = (centred_obs * centred_obs).sum(dim=(-2, -1), keepdim=True)
    gain = (covariance / (variance + 1e-6)).clamp(*GAIN_RANGE)
    return gain, mean_frame - gain * mean_obs


def radiometric_residuals(frames: torch.Tensor, observed: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The masked residual of each frame in the SR's units, (frame - offset) / gain - observed,
    after ``gain_and_offset``: what back-projection adds to the SR."""
    gain, offset = gain_and_offset(frames, observed, masks)
    return masks * ((frames - offset) / gain - observed)


class BackProjection(nn.Module):
    """`steps` unrolled back-projection steps on an SR (B,1,3H,3W) given its frames (B,T,H,W),
    masks (B,T,H,W) in {0,1}, sub-pixel phases (B,T,2) and the masks resampled onto the HR grid
    (``resample_at_phases(masks, phases, "bilinear")``, B,T,3H,3W) that weight the residuals."""

    def __init__(self, steps: int, constrained: bool = False):
        super().__init__()
        self.constrained = constrained
        psf = torch.from_numpy(gaussian_kernel(PSF_SIZE, PSF_SIGMA))[None, None]
        delta = torch.zeros(1, 1, FILTER_SIZE, FILTER_SIZE)
        delta[:, :, FILTER_SIZE // 2, FILTER_SIZE // 2] = 1.0
        if constrained:
            self.point_spread = PointSpreadFunction(psf)
            # a near-delta start: softmax logits cannot be exactly one-hot
            self.back_kernels = PointSpreadFunction(delta + 1e-4, steps)
        else:
            self.psf = nn.Parameter(psf)
            self.filters = nn.Parameter(delta.repeat(steps, 1, 1, 1))
        self.step_sizes = nn.Parameter(torch.ones(steps))

    def kernels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The PSF (1,1,K,K) and the back-projection filters (steps,1,k,k) in use."""
        if self.constrained:
            return self.point_spread(), self.back_kernels()
        return self.psf, self.filters

    def forward(self, sr: torch.Tensor, frames: torch.Tensor, masks: torch.Tensor,
                phases: torch.Tensor, hr_weights: torch.Tensor) -> torch.Tensor:
        psf, filters = self.kernels()
        for step in range(self.step_sizes.shape[0]):
            observed = observe_at_phases(blur(sr, psf), phases)
            residuals = masks * (frames - observed) if self.constrained else \
                radiometric_residuals(frames, observed, masks)
            back = masked_temporal_mean(resample_at_phases(residuals, phases, "bicubic"), hr_weights, dim=1)[:, None]
            back = blur(back, filters[step:step + 1])
            sr = sr + self.step_sizes[step] * back
        return sr
