"""The network's detail kept only where it stands above the noise of the frames' mean.

On a flat or faint surface under noise (water, haze, a low-contrast band, a noisy sensor) the
network adds texture that is mostly amplified noise, and the classical registered mean (the
clear frames resampled bicubically at their phases onto the reference's HR grid, averaged:
``models.sampling.registered_mean``, on the runner's device: `gated`) is closer to the truth. So the SR is that mean plus the network's detail
(network minus mean) weighted by how far the detail's local standard deviation, over
GATE_WINDOW HR pixels, stands above the noise of a plain mean of the clear frames there (the
scene's noise, ``Normalisation.noise``, over the square root of their number; with each frame's
own noise, ``Normalisation.frame_noise``, the square root of the sum of their variances over
their number):

    weight = clip((local std of the detail / noise of the mean - low) / (high - low), 0, 1)

Where the detail is at least `high` times that noise the network's SR is kept as it is; below
`low` times it the registered mean is. Frames are as noisy as their date and sensor made them (a
hazy or dark acquisition, another sensor), so the mean the gate falls back to weighs each frame
by its inverse noise variance (`frame_weights`): where a few frames are much noisier than the
rest, it is far less noisy than the plain mean; where the surface changed in some frame it weighs
every clear frame alike (`CHANGED_PLAIN`). A scene without measurable noise keeps the
network's SR everywhere. The predicted uncertainty is left as the network gives it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .. import SCALE
from ..models.sampling import registered_frames, weighted_mean
from ..registration.change import changed_pixels

GATE_WINDOW = 31
"""HR pixels: the side of the window over which the detail's standard deviation is taken (31
gained within 0.02 dB of 15 and 63 on every validation set in the first version's study)."""
GATE_RATIOS: tuple[float, float] | None = (1.0, 2.2)
"""(low, high): ratios of the detail to the noise of the mean where the network's detail starts
to count and where it fully counts (None: no gate). Checked again for the stage 7 weights
(2026-12-07, docs/evaluation/gate_ratios_stage7_rule.md, fresh validation scenes, 3-frame stacks
added to the sets): kept; on the mean over nine sets (0.8, 1.8) scored 0.004 dB lower (low contrast
with 3 frames -0.070), (1.2, 2.6) 0.006 and (1.5, 3.0) 0.025 lower. Re-chosen once the noise of the mean came
from each frame's own noise (2026-12-03, evening; docs/evaluation/frame_noise_gate_validation.log,
24 validation scenes per set, with the rule of the first choice: the largest mean gain over in
distribution, out of range with 4 and 9 frames, low contrast and surface change, no
training-range set losing more than 0.01 dB): against (0.8, 1.8), low contrast +0.072 dB
[+0.031, +0.122] (with 4 frames +0.260 [+0.100, +0.455]), out of range -0.012 (4 frames -0.002),
in distribution -0.001, surface change -0.002, strong change -0.002, coarse-band stand-in
-0.000; (1.2, 2.6): +0.101 (4 frames +0.428) / -0.032 / -0.018 / -0.003 / -0.008 (a smaller
mean gain); (0.6, 1.5) lost 0.109 at low contrast. First chosen with the scene's noise alone
(scripts/detail_gate_study.py, docs/evaluation/detail_gate_validation.log; five ratio pairs):
(0.8, 1.8), out of range with 4 frames +0.186 dB [+0.099, +0.291] over no gate, low contrast
+0.181 [+0.091, +0.283]. Earlier versions: against the frames' noise instead of the noise of
their mean (docs/evaluation/detail_gate_validation_frame_noise.log: it held on 4-frame stacks but
dropped real detail on 9-frame ones, -0.15 dB on crops of the sample), and with the baselines'
spline-shifted mean on the CPU (_spline_mean.log: within 0.01 dB of this one on every set, but
349 ms per 128-pixel tile)."""
MIN_FRAME_NOISE = 0.25
"""A frame's noise is never taken below this share of the scene's in `frame_weights` (so no frame
weighs more than 16 scene-noise frames)."""
CHANGED_PLAIN = True
"""Where the surface changed in some frames (``registration.change.changed_pixels`` on the tile's
frames), the mean the gate falls back to weighs every clear frame alike (False: by `frame_weights`
everywhere). The SR shows the clear-temporal mean of the dates there; weighed by noise, the mean
leans towards the state of the least noisy frames (a field changed in the 3 clear dates of 9, the
other 6 hazy: the SR moved by 0.55 of the field's change instead of 3/9; with this rule 0.38,
tests/engine/inference/test_detail_gate.py). Validation, 24 scenes per set (docs/evaluation/
changed_plain_validation.log): low contrast with 4 frames +0.132 dB [+0.001, +0.372], with 9
+0.009 [-0.014, +0.038], surface change +0.001, in distribution, out of range (4 and 9 frames)
and strong change unchanged; test window, once: low contrast +0.018 [-0.002, +0.052] (9 frames),
+0.029 [+0.001, +0.080] (4 frames). It costs a change test and a second mean per tile (about
0.2 s more on a 128-pixel tile of 9 frames, one CPU thread)."""
GATE_GAIN = 1.0
"""The weight of the network's detail where it fully counts (1: the network's SR as it is). Many
validation scenes scored best with more than the network's detail, but no gain above 1 passes the
criterion above (docs/evaluation/detail_gain_validation.log, 24 scenes per set: 1.1 loses 0.026 dB
[-0.061, +0.005] in distribution while gaining 0.013 out of range; 1.2: -0.096 / +0.024)."""


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


def frame_weights(frame_noise: np.ndarray, noise: float) -> np.ndarray:
    """Each frame's weight in the mean the gate falls back to: its inverse noise variance in units
    of the scene's `noise` ((noise / frame noise) ** 2), the frame's noise never taken below
    MIN_FRAME_NOISE of the scene's (a frame without a clear 2 x 2 block counts as the scene's)."""
    return (noise / np.maximum(measured_noise(frame_noise, noise), MIN_FRAME_NOISE * noise)) ** 2


def measured_noise(frame_noise: np.ndarray, noise: float) -> np.ndarray:
    """Each frame's noise (T,), the scene's `noise` for a frame without a measure (0)."""
    frame_noise = np.asarray(frame_noise, np.float64)
    return np.where(frame_noise > 0.0, frame_noise, noise)


def gate_detail(sr: np.ndarray, mean: np.ndarray, clear_count: np.ndarray, noise: float | np.ndarray) -> np.ndarray:
    """`sr` with its detail over `mean` (both HR, same units as `noise`) weighted by
    `detail_weight` against `noise`, the noise of that mean (HR, per pixel, or one value);
    `sr` itself where fewer than half a frame is clear, the noise is not positive or the gate
    is off."""
    return gate_detail_weighted(sr, mean, clear_count, noise)[0]


def gate_detail_weighted(sr: np.ndarray, mean: np.ndarray, clear_count: np.ndarray,
                         noise: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`gate_detail` and the weight it gave the network's detail per pixel (1 where it kept `sr`)."""
    if GATE_RATIOS is None or not np.all(np.asarray(noise) > 0.0):
        return sr, np.ones(sr.shape, np.float32)
    clear = np.isfinite(mean) & (clear_count >= 0.5)
    detail = np.where(clear, sr - np.where(clear, mean, 0.0), 0.0).astype(np.float64)
    weight = np.where(clear, GATE_GAIN * detail_weight(detail, noise, GATE_RATIOS, GATE_WINDOW), 1.0)
    gated = sr - (1.0 - weight) * detail
    return gated.astype(sr.dtype), weight.astype(np.float32)


def fallback_mean(frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor,
                  weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The registered mean the gate falls back to (B,1,3h,3w), its frames weighed by `weights`
    (T,) except, with CHANGED_PLAIN, where the surface changed in some frame of the tile: there
    every clear frame alike. And the frames' HR masks (``sampling.registered_frames``)."""
    hr_frames, hr_masks = registered_frames(frames, masks, phases)
    means = weighted_mean(hr_frames, hr_masks, weights)
    if weights is None or not CHANGED_PLAIN:
        return means, hr_masks
    still = np.zeros((frames.shape[1], 2))
    changed = np.stack([changed_pixels(f, m > 0.5, still).any(axis=0)
                        for f, m in zip(frames.cpu().numpy(), masks.cpu().numpy())])
    if not changed.any():
        return means, hr_masks
    changed_hr = torch.from_numpy(changed.repeat(SCALE, axis=-2).repeat(SCALE, axis=-1))[:, None].to(means.device)
    return torch.where(changed_hr, weighted_mean(hr_frames, hr_masks), means), hr_masks


def gated(sr: torch.Tensor, frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor,
          noise: float, frame_noise: np.ndarray | None = None) -> torch.Tensor:
    """`gate_detail` of every tile's `sr` (B,1,3h,3w) against the registered mean of its frames
    (B,T,h,w, normalised; clear where `masks` is 1; sub-pixel `phases` (B,T,2)) and the noise
    of a plain mean of them; `noise`, the scene's, in the same units (the network's). With each
    frame's noise (`frame_noise` (T,)), the mean weighs every frame by `frame_weights` and the
    plain mean's noise comes from the frames' own: sqrt(sum of their variances) / count.
    A refinement (``backends.Refinement``) once `noise` (and `frame_noise`) is bound."""
    return gated_weighted(sr, frames, masks, phases, noise, frame_noise)[0]


def gated_weighted(sr: torch.Tensor, frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor,
                   noise: float, frame_noise: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`gated` and the weight (B,1,3h,3w) it gave the network's detail per pixel (`gate_detail_weighted`)."""
    if GATE_RATIOS is None or not noise > 0.0:
        return sr, torch.ones_like(sr)
    known = frame_noise is not None and len(frame_noise) == frames.shape[1]
    weights = torch.from_numpy(frame_weights(frame_noise, noise)) if known else None
    means, hr_masks = fallback_mean(frames, masks, phases, weights)
    counts = hr_masks.sum(dim=1)
    if known:
        variances = torch.from_numpy(measured_noise(frame_noise, noise) ** 2).to(hr_masks)
        plain_noise = torch.sqrt((hr_masks * variances[:, None, None]).sum(dim=1)) / counts.clamp(min=1.0)
        plain_noise = torch.maximum(plain_noise, noise * MIN_FRAME_NOISE / counts.clamp(min=1.0).sqrt())
    else:
        plain_noise = noise / counts.clamp(min=1.0).sqrt()
    tiles = zip(sr[:, 0].cpu().numpy(), means[:, 0].cpu().numpy(), counts.cpu().numpy(), plain_noise.cpu().numpy())
    srs, detail_weights = zip(*(gate_detail_weighted(*tile) for tile in tiles))
    return (torch.from_numpy(np.stack(srs))[:, None].to(sr), torch.from_numpy(np.stack(detail_weights))[:, None].to(sr))
