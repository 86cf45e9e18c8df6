"""The SR made consistent with its own frames where two halves of the frames agree.

The network (and the detail gate after it) gives an SR whose re-observation does not quite
match the clear LR frames. Iterative back-projection (Irani & Peleg 1991;
``evaluation.baselines.ibp``) started from that SR moves it towards them: each step blurs the
SR with a Gaussian PSF (``backprojection.PSF_SIGMA``), observes it at every frame's sub-pixel
phase, and adds the mean over the clear frames of the residuals, resampled back onto the HR
grid. Where the frames are noisy (a faint surface, a noisy sensor, few frames) that correction
is mostly the frames' noise, and plain back-projection loses up to 3 dB there.

So the correction is weighed by how far two independent halves of the frames (every other
frame) agree on it: each half is back-projected from the same SR on its own, and over
AGREEMENT_WINDOW HR pixels the correlation r of the two halves' corrections is the share of
signal in one half's correction (noise is independent between the halves, signal is not). The
Spearman-Brown step 2r / (1 + r) gives that share for the correction from all the frames,
which is added with that weight (a local Wiener weight that needs no noise estimate). After the
detail gate (`gated_then_consistent`, the engine's refinement) the weight is also the share of the
network's detail the gate kept: where the gate fell back to the frames' noise-weighted mean, the
correction, which weighs every frame alike, would pull that mean back towards the noisy frames.
The predicted uncertainty is left as the network gives it.

Tiles come with mirrored context (``tiled.EDGE_CONTEXT`` LR pixels on every side, for the
network). A mirrored frame is not its frame seen at its phase, so residuals there are not
counted (`context`), and the correction rises from nothing over EDGE_RAMP HR pixels inside the
context: the SR beside a tile's edge is held by the frames' real pixels only, as far as they can
hold it.

The PSF is fixed: where a scene is blurred wider than it with little noise, both halves agree on
a correction towards that blur (validation: -0.13 to -0.15 dB for blurs of 1.8-3.0 HR px,
docs/evaluation/consistency_blur_validation.log).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .. import SCALE
from ..models.backprojection import PSF_SIGMA, PSF_SIZE, blur_separable, gaussian_kernel
from ..models.sampling import masked_temporal_mean
from ..models.separable_sampling import observe_at_phases, resample_at_phases
from .detail_gate import gated_weighted

CONSISTENCY_STEPS = 20
"""Back-projection steps from the network's SR (0: no correction). Chosen with AGREEMENT_WINDOW on
24 validation scenes per set (scripts/detail_gate_study.py --consistency; docs/evaluation/
consistency_validation.log, fourth try) as the largest mean gain over six sets with none losing
more than 0.01 dB: in distribution +0.241 dB [+0.155, +0.339] over the gate alone, coarse-band
stand-in +0.169 [+0.099, +0.242], surface change +0.016, out of range -0.003, low contrast
-0.004 (10 steps: +0.195 / +0.132; 31 px against 63: +0.070 against +0.066 dB on average). About
30% more time per scene on the CPU. Re-checked with the halves in content order against 30 and 40
steps (docs/evaluation/consistency_steps_validation.log): 30 gain 0.018 dB more in distribution
but lose 0.023 on low contrast, 40 lose more. Checked again for the stage 7 weights on fresh scenes
with 3-frame stacks (docs/evaluation/consistency_steps_stage7_rule.md): kept; 30 steps +0.003 dB on
the mean over ten sets, 10 steps -0.014 (coarse-band stand-in -0.070)."""
AGREEMENT_WINDOW = 31
"""HR pixels: the side of the window over which the two halves' corrections are correlated."""
GATED_CORRECTION = True
"""After the detail gate (`gated_then_consistent`), the correction is also weighed by the share of
the network's detail the gate kept (False: by the halves' agreement alone, the rule until
2026-12-03). Validation, 24 scenes per set (docs/evaluation/gated_correction_validation.log):
low contrast +0.039 dB [+0.014, +0.072], out of range +0.006 [+0.002, +0.010], in distribution
-0.002, surface change -0.001, strong change -0.001, coarse-band stand-in -0.003."""


EDGE_RAMP = 9
"""HR pixels inside a tile's mirrored context over which the correction rises linearly from 1/10
of its weight to all of it. Until 2026-12-04 (night 2) the mirrored frames' residuals were
fitted: the sample's SR fell to 0 DN on 8 pixels of its top edge (true 220-360) beside a bright
field; not counting them with no ramp rang at edges where the frames disagree (surface change
-0.029 dB).
Chosen on 24 validation scenes per set (scripts/scene_scores.py --border; docs/evaluation/
edge_context_validation.log) as the largest mean cPSNR gain with no set losing more than 0.01 dB.
Against fitting the mirrored frames: in distribution +0.029 dB [+0.011, +0.053] (its outer 3 HR
px, which cPSNR crops, +0.39), low contrast +0.020, out of range -0.003, surface change -0.006,
strong change +0.001, every set's outer 3 px up (+0.02 to +0.14); 6 px lost 0.013 on surface
change, 15 px gained less (+0.008 on average against +0.010)."""


def observed(masks: torch.Tensor, context: int) -> torch.Tensor:
    """`masks` (B,T,h,w) with their outer `context` LR pixels (mirrored, not observed) not clear."""
    if context <= 0 or min(masks.shape[-2:]) <= 2 * context:
        return masks
    inside = torch.zeros_like(masks)
    inside[..., context:-context, context:-context] = 1.0
    return masks * inside


def edge_ramp(height: int, width: int, context: int, like: torch.Tensor) -> torch.Tensor:
    """(height, width) HR weights: 0 over the outer `context` LR pixels, then rising linearly to 1
    over EDGE_RAMP HR pixels (1 everywhere without context)."""
    def profile(n: int) -> torch.Tensor:
        edge = torch.minimum(torch.arange(n), torch.arange(n).flip(0)).to(like)
        return ((edge - context * SCALE + 1) / (EDGE_RAMP + 1)).clamp(0.0, 1.0)
    if context <= 0:
        return torch.ones((height, width), dtype=like.dtype, device=like.device)
    return profile(height)[:, None] * profile(width)[None, :]


def psf_kernel(sigma: float) -> torch.Tensor:
    """(1,1,K,K) Gaussian of `sigma` HR px, K at least PSF_SIZE and 6 sigma."""
    return torch.from_numpy(gaussian_kernel(max(PSF_SIZE, 2 * math.ceil(3 * sigma) + 1), sigma))[None, None]


def back_project(sr: torch.Tensor, frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor,
                 steps: int, psf_sigma: float = PSF_SIGMA, context: int = 0) -> torch.Tensor:
    """`steps` IBP steps from `sr` (B,1,3H,3W) towards the clear pixels of `frames` (B,T,H,W;
    `masks` 1 where clear) seen at their sub-pixel `phases` (B,T,2, LR px) through a Gaussian
    PSF of `psf_sigma` HR px. The outer `context` LR pixels are mirrored context: their residuals
    are not counted, but they weigh in the mean of the corrections, which moves the SR beside
    them only as far as the real pixels ask (left free there, it rang). The sampling in 1-D
    passes (``separable_sampling``: this step is never exported to ONNX), the Gaussian as a
    column then a row: the sample runs 18% faster than with grid_sample and a 2-D kernel, the
    same SR within 0.01 DN."""
    column = psf_kernel(psf_sigma).to(sr).sum(-1, keepdim=True)  # the Gaussian's normalised profile
    hr_weights, counted = resample_at_phases(masks, phases, "bilinear"), observed(masks, context)
    for _ in range(steps):
        residuals = counted * (frames - observe_at_phases(blur_separable(sr, column), phases))
        sr = sr + masked_temporal_mean(resample_at_phases(residuals, phases, "bicubic"), hr_weights, dim=1)[:, None]
    return sr


def local_mean(image: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of (B,1,H,W) `image` over `window` x `window` pixels, edges mirrored."""
    pad = min(window // 2, image.shape[-2] - 1, image.shape[-1] - 1)
    padded = F.pad(image, (pad, pad, pad, pad), mode="reflect") if pad > 0 else image
    columns = F.avg_pool2d(padded, (2 * pad + 1, 1), stride=1)  # a column pass, then a row pass: one box
    return F.avg_pool2d(columns, (1, 2 * pad + 1), stride=1)    # mean, about 15x faster at 31 pixels


def agreement_weight(first: torch.Tensor, second: torch.Tensor, window: int) -> torch.Tensor:
    """Per pixel, the share in [0, 1] of signal in the mean of two corrections (B,1,H,W) made
    from independent halves of the frames: their local correlation r, stepped up to 2r / (1 + r)."""
    cross = local_mean(first * second, window)
    power = local_mean(0.5 * (first * first + second * second), window)
    correlation = torch.where(power > 0, cross / power.clamp_min(torch.finfo(power.dtype).tiny), 0.0).clamp(0.0, 1.0)
    return 2.0 * correlation / (1.0 + correlation)


def content_order(frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """(B,T) indices of the frames sorted by what they hold (frames with a clear pixel first, then
    phase dy, then dx, then the mean of their clear pixels), so that the halves do not depend on
    the order the frames came in, nor on frames without a clear pixel in the tile (last: their
    phases, which say nothing there, do not reshuffle the halves). The frames with a clear pixel
    are then taken round the circle of phases dy from the widest gap between them
    (`from_widest_gap`): a frame half a pixel off, whose phase flips between +0.5 and -0.5 when
    its shift moves by a thousandth of a pixel, keeps its place."""
    clear_count = masks.sum((-2, -1))
    clear_mean = (frames * masks).sum((-2, -1)) / clear_count.clamp_min(1.0)
    order = torch.arange(frames.shape[1], device=frames.device).expand(frames.shape[:2])
    empty = (clear_count == 0).to(phases.dtype)
    for key in (clear_mean, phases[..., 1], phases[..., 0], empty):  # least significant first, stable sorts
        order = order.gather(1, torch.sort(key.gather(1, order), dim=1, stable=True).indices)
    return torch.stack([from_widest_gap(row, phases[item, row, 0], int((clear_count[item] > 0).sum()))
                        for item, row in enumerate(order)])


def from_widest_gap(order: torch.Tensor, dy: torch.Tensor, count: int) -> torch.Tensor:
    """`order` (T,) with its first `count` entries, sorted by their phases `dy` (in [-0.5, 0.5]),
    rotated to start after the widest gap between consecutive phases on the circle, where -0.5 and
    +0.5 are the same place. With an odd number of frames, starting at -0.5 instead moved a frame
    from one half to the other whenever a phase crossed +-0.5: on a validation scene the SR moved
    by 0.99% of the level for a shift moved by 0.008 px, 0.32% now (scripts/phase_flip_study.py)."""
    if count < 3:
        return order
    values = dy[:count]
    gaps = torch.cat([values[:1] + 1.0 - values[count - 1:count], values[1:] - values[:-1]])
    return torch.cat([order[:count].roll(-int(torch.argmax(gaps))), order[count:]])


def consistent(sr: torch.Tensor, frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor,
               steps: int | None = None, window: int | None = None, psf_sigma: float | None = None,
               kept: torch.Tensor | None = None, context: int = 0) -> torch.Tensor:
    """`sr` plus its back-projection correction (`back_project`, `steps` steps, all the frames)
    weighted by the agreement of the corrections from every other frame (`agreement_weight`;
    frames in `content_order`) and, where given, by `kept` (B,1,3h,3w: the share of the network's
    detail the detail gate kept, `gated_then_consistent`); `sr` itself with fewer than two frames
    or no steps. A refinement (``backends.Refinement``); `steps`, `window` and `psf_sigma` (HR px:
    the sensor's PSF, as stated by the user) default to CONSISTENCY_STEPS, AGREEMENT_WINDOW and
    PSF_SIGMA; the tile's outer `context` LR pixels are mirrored (`back_project`, `edge_ramp`)."""
    steps = CONSISTENCY_STEPS if steps is None else steps
    window = AGREEMENT_WINDOW if window is None else window
    psf_sigma = PSF_SIGMA if psf_sigma is None else psf_sigma
    if steps <= 0 or frames.shape[1] < 2:
        return sr
    batch = torch.arange(frames.shape[0], device=frames.device)[:, None]
    order = content_order(frames, masks, phases)
    full, even, odd = (back_project(sr, frames[batch, k], masks[batch, k], phases[batch, k], steps, psf_sigma,
                                    context) - sr for k in (order, order[:, 0::2], order[:, 1::2]))
    weight = agreement_weight(even, odd, window) * edge_ramp(*sr.shape[-2:], context, sr)
    return sr + (weight if kept is None or not GATED_CORRECTION else weight * kept) * full


def gated_then_consistent(sr: torch.Tensor, frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor,
                          noise: float, frame_noise: np.ndarray | None = None,
                          psf_sigma: float | None = None, context: int = 0) -> torch.Tensor:
    """The detail gate (``detail_gate.gated``, `noise` and `frame_noise` as there), then `consistent`
    with its correction kept as far as the gate kept the network's detail: where the frames' mean
    was kept (a flat or faint surface under noise), the back-projection does not bring the noise
    back. A refinement (``backends.Refinement``) once `noise`, `frame_noise`, `psf_sigma` and
    `context` (the tiles' mirrored LR pixels, `consistent`) are bound."""
    sr, kept = gated_weighted(sr, frames, masks, phases, noise, frame_noise)
    return consistent(sr, frames, masks, phases, psf_sigma=psf_sigma, kept=kept.clamp(max=1.0), context=context)
