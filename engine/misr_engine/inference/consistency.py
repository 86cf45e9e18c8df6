"""The SR made consistent with its own frames: classical back-projection after the network.

The network (and the detail gate after it) gives an SR whose re-observation does not quite
match the clear LR frames: the steps after PIUnet's own back-projection (refinement, detail)
trade consistency for sharpness, and on content unlike its training the network's detail can be
wrong. Iterative back-projection (Irani & Peleg 1991; ``evaluation.baselines.ibp``) started
from the network's SR instead of the registered mean keeps what the frames support and moves the
rest towards them: each step blurs the SR with a Gaussian PSF (``backprojection.PSF_SIGMA``),
observes it at every frame's sub-pixel phase, and adds the mean over the clear frames of the
residuals, resampled back onto the HR grid. The network is the prior, the frames the data.
The predicted uncertainty is left as the network gives it.
"""

from __future__ import annotations

import numpy as np
import torch

from ..models.backprojection import PSF_SIGMA, PSF_SIZE, blur, gaussian_kernel
from ..models.sampling import (
    masked_temporal_mean,
    observe_at_phases,
    resample_at_phases,
)
from .backends import Runner

CONSISTENCY_STEPS = 0
"""Back-projection steps after the network on every tile (0: none)."""


def back_project(sr: torch.Tensor, frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor,
                 steps: int) -> torch.Tensor:
    """`steps` IBP steps from `sr` (B,1,3H,3W) towards the clear pixels of `frames` (B,T,H,W;
    `masks` 1 where clear) seen at their sub-pixel `phases` (B,T,2, LR px)."""
    psf = torch.from_numpy(gaussian_kernel(PSF_SIZE, PSF_SIGMA))[None, None].to(sr)
    hr_weights = resample_at_phases(masks, phases, "bilinear")
    for _ in range(steps):
        residuals = masks * (frames - observe_at_phases(blur(sr, psf), phases))
        sr = sr + masked_temporal_mean(resample_at_phases(residuals, phases, "bicubic"), hr_weights, dim=1)[:, None]
    return sr


class ConsistencyRunner:
    """A runner (``backends.Runner``) whose SR is `runner`'s after `back_project` with
    CONSISTENCY_STEPS steps, on the runner's torch device (the CPU for ONNX Runtime)."""

    def __init__(self, runner: Runner):
        self.runner = runner
        self.ibp_device = getattr(runner, "device", torch.device("cpu"))

    def __getattr__(self, name: str):
        """What the wrapped runner says about itself (backend, provider, default_batch, ...)."""
        return getattr(self.runner, name)

    def __call__(self, frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> np.ndarray:
        output = self.runner(frames, masks, phases)
        if CONSISTENCY_STEPS <= 0:
            return output
        with torch.inference_mode():
            inputs = [torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.ibp_device)
                      for a in (frames, masks, phases)]
            sr = torch.from_numpy(np.ascontiguousarray(output[:, :1], np.float32)).to(self.ibp_device)
            output[:, :1] = back_project(sr, *inputs, CONSISTENCY_STEPS).cpu().numpy()
        return output
