"""The network's detail kept only where it stands above the scene's noise.

On a flat or faint surface under noise (water, haze, a low-contrast band, a noisy sensor) the
network adds texture that is mostly amplified noise, and the classical registered mean (the
clear frames bicubic x3 on the reference's HR grid, averaged: ``registration.stack.
registered_mean_hr``) is closer to the truth. So the SR is that mean plus the network's detail
(network minus mean) weighted by how far the detail's local standard deviation, over
GATE_WINDOW HR pixels, stands above the frames' noise (``Normalisation.noise``):

    weight = clip((local std of the detail / noise - low) / (high - low), 0, 1)

Where the detail is at least `high` times the noise the network's SR is kept as it is; where it
is below `low` times the noise the registered mean is. A scene without measurable noise keeps
the network's SR everywhere. The predicted uncertainty is left as the network gives it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..registration.stack import registered_mean_hr
from .backends import Runner

GATE_WINDOW = 31
"""HR pixels: the side of the window over which the detail's standard deviation is taken."""
GATE_RATIOS: tuple[float, float] | None = (0.4, 0.9)
"""(low, high): detail-to-noise ratios where the network's detail starts to count and where it
fully counts (None: no gate). Chosen with GATE_WINDOW on 24 validation scenes per set
(scripts/detail_gate_study.py, docs/evaluation/detail_gate_validation.log; windows 15/31/63,
five ratio pairs) as the largest mean gain over the sets with no training-range set losing more
than 0.01 dB: out of range (4 frames) +0.157 dB [+0.082, +0.250], low contrast +0.185
[+0.085, +0.296], in distribution -0.005 [-0.009, -0.003], surface change -0.009 [-0.017,
-0.003]. Wider ratios (0.5-1.0) gained 0.01 dB more out of range for twice the loss inside the
training ranges."""


def detail_weight(detail: np.ndarray, noise: float, ratios: tuple[float, float], window: int) -> np.ndarray:
    """Per pixel of `detail` (network minus registered mean, finite), the weight in [0, 1] of the
    network's detail: its local standard deviation over `window` pixels against `noise`."""
    mean = ndimage.uniform_filter(detail, window, mode="reflect")
    variance = ndimage.uniform_filter(detail * detail, window, mode="reflect") - mean * mean
    ratio = np.sqrt(np.maximum(variance, 0.0)) / noise
    low, high = ratios
    return np.clip((ratio - low) / (high - low), 0.0, 1.0)


def gate_detail(sr: np.ndarray, mean: np.ndarray, noise: float,
                ratios: tuple[float, float] | None = None) -> np.ndarray:
    """`sr` with its detail over `mean` (both HR, same units as `noise`) weighted by
    `detail_weight`; `sr` itself where `mean` is NaN (no clear frame), the noise is not
    positive or the gate is off."""
    ratios = GATE_RATIOS if ratios is None else ratios
    if ratios is None or not noise > 0.0:
        return sr
    clear = np.isfinite(mean)
    detail = np.where(clear, sr - np.where(clear, mean, 0.0), 0.0).astype(np.float64)
    gated = sr - (1.0 - detail_weight(detail, noise, ratios, GATE_WINDOW)) * detail
    return gated.astype(sr.dtype)


class DetailGateRunner:
    """A runner (``backends.Runner``) whose SR is `runner`'s with the detail gated against the
    registered mean of the same tile (`gate_detail`); `noise` in the network's units."""

    def __init__(self, runner: Runner, noise: float):
        self.runner, self.noise = runner, noise
        self.backend, self.provider, self.default_batch = runner.backend, runner.provider, runner.default_batch

    def __call__(self, frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> np.ndarray:
        output = self.runner(frames, masks, phases)
        for index, (f, m, p) in enumerate(zip(frames, masks, phases)):
            mean, _ = registered_mean_hr(f, m > 0.5, p)
            output[index, 0] = gate_detail(output[index, 0], mean, self.noise)
        return output
