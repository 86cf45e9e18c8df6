"""The SR showing the surface as one chosen frame shows it (``--reference-frame``).

By default the SR shows the clear-temporal-mean surface: a field harvested in half the dates
comes out half-harvested. An analyst who wants the scene as it was on one date names that frame.
The SR (from every frame: the detail the others add stays) is then moved towards that frame
where, and only where, the frame departs from it by more than its noise: back-projected onto
that frame alone (``consistency.back_project``, STATE_STEPS steps through the same PSF), the
correction weighted per pixel by how far the frame's residual, averaged over STATE_WINDOW x
STATE_WINDOW LR pixels, stands above the noise of such a mean (that frame's noise, `frame_look`,
over STATE_WINDOW; its radiometric offset from the others over the scene taken off first):

    weight = clip((|mean residual| / (noise / STATE_WINDOW) - low) / (high - low), 0, 1)

so a change (a field, a flood, a new building) or anything else that date shows differently comes
out as on that date, and the frame's own noise does not. Where the frame is cloudy nothing moves:
the SR shows the clear-temporal mean there. The predicted uncertainty is left as the network
gives it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import SCALE
from ..imaging.robust import NORMAL_MAD
from ..models.backprojection import PSF_SIGMA, blur
from ..models.sampling import observe_at_phases
from .consistency import CONSISTENCY_STEPS, back_project, edge_ramp, local_mean, observed, psf_kernel
from .normalisation import haar_diagonal

STATE_STEPS = CONSISTENCY_STEPS
"""Back-projection steps onto the chosen frame."""
STATE_WINDOW = 3
"""LR pixels: the side of the window the frame's residual is averaged over before it is tested."""
STATE_SIGMAS = (3.0, 6.0)
"""(low, high): how many standard deviations of that mean's noise a departure must stand above
to start to count and to count fully. Set on the embedded sample with a field raised by 1500 DN in
4 of its 8 frames (tests/engine/inference/test_frame_state.py): the SR inside the field follows
the chosen frame within 2%, and on the unchanged stack the SR moves by 0.01-0.03% of the level;
on validation scenes without change by 0.07% in the training ranges (-0.03 dB), 0.2% out of them
(-0.12 dB), 0.01% at low contrast (-0.03 dB): docs/evaluation/frame_state_validation.log."""


NOISE_SAMPLES = 1_000_000
"""At most about this many of the frame's finest diagonal wavelet coefficients estimate its noise."""


@dataclass(frozen=True)
class FrameLook:
    """How the chosen frame looks beside the others over the whole scene (input units)."""

    noise: float
    """Its noise standard deviation (``normalisation.haar_diagonal`` of that frame alone: frames are
    as noisy as their date and sensor made them, and the scene's noise, a median over every frame,
    can be far below the chosen frame's); 0 when it has no clear 2 x 2 block."""
    offset: float
    """The median of its departures from the frames' per-pixel median (where it and two others
    are clear): what its radiometric fit left over the whole scene (a gain the fits could not
    determine on a low-contrast scene), which is its radiometry, not its surface."""


def frame_look(blocks: Iterable[tuple[np.ndarray, np.ndarray]], index: int, shape: tuple[int, int, int]) -> FrameLook:
    """`FrameLook` of frame `index` of a (T, H, W) stack given as (frames, masks) blocks of rows
    (registered, in the frames' median radiometry), from about NOISE_SAMPLES values of each kind."""
    step = max(1, shape[1] * shape[2] // 4 // NOISE_SAMPLES)
    details, departures = [], []
    for frames, masks in blocks:
        frames, masks = np.asarray(frames, np.float32), np.asarray(masks, bool)
        details.append(np.abs(haar_diagonal(frames[index:index + 1], masks[index:index + 1]))[::step])
        usable = masks[index] & (masks.sum(axis=0) >= 3)
        if usable.any():
            median = np.nanmedian(np.where(masks[:, usable], frames[:, usable], np.nan), axis=0)
            departures.append((frames[index][usable] - median)[::step])
    detail = np.concatenate(details) if details else np.zeros(0)
    departure = np.concatenate(departures) if departures else np.zeros(0)
    return FrameLook(float(np.median(detail)) / NORMAL_MAD if detail.size else 0.0,
                     float(np.median(departure)) if departure.size else 0.0)


def toward_frame(sr: torch.Tensor, frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor, index: int,
                 noise: float, offset: float = 0.0, psf_sigma: float | None = None, context: int = 0) -> torch.Tensor:
    """`sr` (B,1,3h,3w) moved towards frame `index` of `frames` (B,T,h,w, clear where `masks`
    is 1, at sub-pixel `phases` (B,T,2)) where that frame departs from it beyond `noise` (that
    frame's noise standard deviation, same units); `psf_sigma`: the back-projection's PSF (HR
    px; None: PSF_SIGMA); `offset` is taken off the frame first (`FrameLook`). A refinement
    (``backends.Refinement``) once `index`, `noise` and `offset` (that frame's: `frame_look`, in
    the same units) are bound; the tile's outer `context` LR pixels are mirrored, neither tested nor
    fitted (``consistency.back_project``, ``consistency.edge_ramp``)."""
    psf_sigma = PSF_SIGMA if psf_sigma is None else psf_sigma
    one = slice(index, index + 1)
    frame, mask, phase = frames[:, one] - offset * masks[:, one], masks[:, one], phases[:, one]
    counted = observed(mask, context)
    residual = counted * (frame - observe_at_phases(blur(sr, psf_kernel(psf_sigma).to(sr)), phase))
    cover = local_mean(counted, STATE_WINDOW)
    mean = local_mean(residual, STATE_WINDOW) / cover.clamp_min(1e-6)
    low, high = STATE_SIGMAS
    standing = mean.abs() / max(noise / STATE_WINDOW, torch.finfo(sr.dtype).tiny)
    weight = ((standing - low) / (high - low)).clamp(0.0, 1.0) * (cover > 0.5)
    weight = F.interpolate(weight, scale_factor=SCALE, mode="bilinear", align_corners=False)
    weight = weight * edge_ramp(*sr.shape[-2:], context, sr)
    return sr + weight * (back_project(sr, frame, mask, phase, STATE_STEPS, psf_sigma, context) - sr)
