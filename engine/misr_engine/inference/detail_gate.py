"""The network's detail kept only where it stands above the noise of the frames' mean.

On a flat or faint surface under noise (water, haze, a low-contrast band, a noisy sensor) the
network adds texture that is mostly amplified noise, and the classical registered mean (the
clear frames resampled bicubically at their phases onto the reference's HR grid, averaged:
``models.sampling.registered_frames``, on the runner's device) is closer to the truth. So the SR is that mean plus the network's detail
(network minus mean) weighted by how far the detail's local standard deviation, over
GATE_WINDOW HR pixels, stands above the noise left in the mean of the clear frames (the frames'
noise, ``Normalisation.noise``, over the square root of the number of clear frames there):

    weight = clip((local std of the detail / noise of the mean - low) / (high - low), 0, 1)

Where the detail is at least `high` times that noise the network's SR is kept as it is; below
`low` times it the registered mean is. A scene without measurable noise keeps the network's SR
everywhere. Where the surface changed between dates (a harvest, a flood) the frames disagree at
coarse scales far beyond their noise; there the weight gives way to the mean as well
(`CHANGE_RATIOS`, `coarse_disagreement`), since the SR's defined state is the clear-temporal mean.
The predicted uncertainty is left as the network gives it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ..models.sampling import masked_temporal_mean, registered_frames
from .backends import Runner

GATE_WINDOW = 31
"""HR pixels: the side of the window over which the detail's standard deviation is taken (31
gained within 0.02 dB of 15 and 63 on every validation set in the first version's study)."""
GATE_RATIOS: tuple[float, float] | None = (0.8, 1.8)
"""(low, high): ratios of the detail to the noise of the mean where the network's detail starts
to count and where it fully counts (None: no gate). Chosen on 24 validation scenes per set
(scripts/detail_gate_study.py, docs/evaluation/detail_gate_validation.log; five ratio pairs) as
the largest mean gain over the sets with no training-range set losing more than 0.01 dB (ties
to the smaller loss in distribution): out of range with 4 frames +0.186 dB [+0.099, +0.291],
with 9 frames +0.030 [-0.001, +0.066], low contrast +0.181 [+0.091, +0.283], in distribution
-0.001, surface change -0.000 (1.0-2.0: the same mean gain, -0.003 in distribution). Earlier
versions: against the frames' own noise (docs/evaluation/detail_gate_validation_frame_noise.log:
it held on 4-frame stacks but dropped real detail on 9-frame ones, -0.15 dB on crops of the
sample), and with the baselines' spline-shifted mean on the CPU (_spline_mean.log: within
0.01 dB of this one on every set, but 349 ms per 128-pixel tile)."""
GATE_GAIN = 1.0
"""The weight of the network's detail where it fully counts (1: the network's SR as it is). Many
validation scenes scored best with more than the network's detail, but no gain above 1 passes the
criterion above (docs/evaluation/detail_gain_validation.log, 24 scenes per set: 1.1 loses 0.026 dB
[-0.061, +0.005] in distribution while gaining 0.013 out of range; 1.2: -0.096 / +0.024)."""

CHANGE_RATIOS: tuple[float, float] | None = (12.0, 24.0)
"""(low, high): ratios of the frames' coarse disagreement (`coarse_disagreement`) to the frames'
noise where the network's detail starts to give way to the mean and where only the mean is kept
(None: no such rule). Where the surface changed between dates the frames disagree far beyond
their noise and the network's fusion of them (not a plain mean) draws patterns inside the field;
the registered mean there is the defined state (on the worst validation scene, a field +800 DN
in 3 of 9 frames: RMSE in the field's core 85 DN for the network, 63 for the mean). Chosen on
24 validation scenes per set with the gate above (scripts/detail_gate_study.py --change,
docs/evaluation/detail_gate_change_validation.log; 3-6, 6-12, 12-24, 24-48), by the same
criterion: surface change +0.055 dB [-0.044, +0.207] (worst scene against the strongest
classical -1.38 -> -0.31), low contrast +0.075, in distribution and out of range unchanged
(within 0.001 dB); a field 0.8-1.5 times the level in 30-50% of the frames (beyond the
training range): +0.211 [-0.021, +0.535], worst scene -2.72 -> -0.03."""
CHANGE_SIGMA = 3.0
"""HR px: the Gaussian low-pass of each registered frame's departure from the mean, so that
aliasing and sub-pixel edges (fine) do not count as change (coarse)."""


def coarse_disagreement(hr_frames: torch.Tensor, hr_weights: torch.Tensor, mean: torch.Tensor,
                        sigma: float = CHANGE_SIGMA) -> torch.Tensor:
    """(B,1,3H,3W): the clear frames' RMS of their low-passed departures from the mean (B,T,3H,3W
    registered frames and clear weights, B,1,3H,3W mean): large where the surface changed
    between dates, near the noise elsewhere."""
    radius = int(3 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=hr_frames.dtype, device=hr_frames.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    b, t, h, w = hr_frames.shape

    def low_pass(images: torch.Tensor) -> torch.Tensor:
        flat = images.reshape(b * t, 1, h, w)
        flat = torch.nn.functional.pad(flat, (radius, radius, radius, radius), mode="replicate")
        flat = torch.nn.functional.conv2d(flat, kernel.view(1, 1, 1, -1))
        return torch.nn.functional.conv2d(flat, kernel.view(1, 1, -1, 1)).reshape(b, t, h, w)

    weights = low_pass(hr_weights)
    departures = low_pass((hr_frames - mean) * hr_weights) / weights.clamp_min(1e-3)
    return masked_temporal_mean(departures * departures, hr_weights, dim=1)[:, None].sqrt()


def detail_weight(detail: np.ndarray, noise: np.ndarray | float, ratios: tuple[float, float],
                  window: int) -> np.ndarray:
    """Per pixel of `detail` (network minus registered mean, finite), the weight in [0, 1] of the
    network's detail: its local standard deviation over `window` pixels against `noise` (per
    pixel or one value, positive)."""
    mean = ndimage.uniform_filter(detail, window, mode="reflect")
    variance = ndimage.uniform_filter(detail * detail, window, mode="reflect") - mean * mean
    ratio = np.sqrt(np.maximum(variance, 0.0)) / noise
    low, high = ratios
    return np.clip((ratio - low) / (high - low), 0.0, 1.0)


def gate_detail(sr: np.ndarray, mean: np.ndarray, clear_count: np.ndarray, noise: float,
                disagreement: np.ndarray | None = None) -> np.ndarray:
    """`sr` with its detail over `mean` (both HR, same units as the frames' `noise`) weighted by
    `detail_weight` against the noise of a mean of `clear_count` frames (HR, per pixel); `sr`
    itself where fewer than half a frame is clear, the noise is not positive or the gate is off."""
    if GATE_RATIOS is None or not noise > 0.0:
        return sr
    clear = np.isfinite(mean) & (clear_count >= 0.5)
    detail = np.where(clear, sr - np.where(clear, mean, 0.0), 0.0).astype(np.float64)
    noise_of_mean = noise / np.sqrt(np.maximum(clear_count, 1))
    weight = GATE_GAIN * detail_weight(detail, noise_of_mean, GATE_RATIOS, GATE_WINDOW)
    if CHANGE_RATIOS is not None and disagreement is not None:
        low, high = CHANGE_RATIOS
        weight = weight * (1.0 - np.clip((disagreement / noise - low) / (high - low), 0.0, 1.0))
    gated = sr - (1.0 - weight) * detail
    return gated.astype(sr.dtype)


class DetailGateRunner:
    """A runner (``backends.Runner``) whose SR is `runner`'s with the detail gated against the
    registered mean of the same tile (`gate_detail`); `noise` in the network's units. The mean
    is computed on the runner's torch device (the CPU for ONNX Runtime)."""

    def __init__(self, runner: Runner, noise: float):
        self.runner, self.noise = runner, noise
        self.mean_device = getattr(runner, "device", torch.device("cpu"))

    def __getattr__(self, name: str):
        """What the wrapped runner says about itself (backend, provider, default_batch, ...)."""
        return getattr(self.runner, name)

    def __call__(self, frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> np.ndarray:
        output = self.runner(frames, masks, phases)
        if GATE_RATIOS is None or not self.noise > 0.0:
            return output
        with torch.inference_mode():
            inputs = [torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.mean_device)
                      for a in (frames, masks, phases)]
            hr_frames, hr_weights = registered_frames(*inputs)
            mean = masked_temporal_mean(hr_frames, hr_weights, dim=1)[:, None]
            disagreement = (coarse_disagreement(hr_frames, hr_weights, mean)[:, 0].cpu().numpy()
                            if CHANGE_RATIOS is not None else [None] * len(output))
            means, counts = mean[:, 0].cpu().numpy(), hr_weights.sum(dim=1).cpu().numpy()
        for index, (mean, count) in enumerate(zip(means, counts)):
            output[index, 0] = gate_detail(output[index, 0], mean, count, self.noise, disagreement[index])
        return output
