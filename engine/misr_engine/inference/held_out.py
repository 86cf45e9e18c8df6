"""How well the other frames, seen through a Gaussian PSF of some width, predict a frame left out:
a cue to the frames' own blur that reads the frames alone, not the network (``psf_width``).

Leave one frame out, back-project the others (iterative back-projection from their registered
mean, HELD_OUT_STEPS steps, ``consistency.back_project``) through a Gaussian PSF of width w, observe
the result at the left-out frame's sub-pixel phase through the same w and take the mean squared
residual over its clear pixels (its mean removed: a brightness offset says nothing of the blur).
Averaged over up to HELD_OUT_FRAMES left-out frames (the clearest) and the scene's windows.

It is no estimate of the blur by itself: on validation its least lies at 0.3 HR px for frames
blurred by their pixels alone and at 1.6-2.8 for frames blurred by 2.6-3.0 HR px, but also at
0.3-0.9 on many frames blurred as in training (1.2 HR px frames of real imagery included: the
narrower the PSF, the more directly the other phases predict the left-out one), and at the widest
where noise dominates (a wide PSF smooths the noise away). ``psf_width`` asks it only how much
narrower to take a width that the network's own response (k) already narrowed below the engine's,
or left there with k neutral (docs/evaluation/psf_width_held_out_rule.md,
psf_width_held_out_further_rule.md, psf_width_held_out_neutral_rule.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..models.backprojection import blur_separable
from ..models.sampling import fill_cloudy, masked_temporal_mean
from ..models.separable_sampling import observe_at_phases, resample_at_phases
from .consistency import back_project, psf_kernel

HELD_OUT_FRAMES = 5
"""Frames left out in turn (the clearest), each predicted from all the others."""
HELD_OUT_STEPS = 10
"""Back-projection steps from the other frames' registered mean (as ``baselines.IBP_ITERATIONS``)."""
MARGIN = 4
"""LR pixels at a window's edge where a left-out frame's residual is not counted."""
MIN_FRAMES = 3
"""Fewer frames in a window say nothing: it is skipped."""


def held_out_misfits(windows: Sequence[tuple[np.ndarray, np.ndarray]], phases: np.ndarray,
                     widths: Sequence[float]) -> dict[float, float]:
    """The mean squared residual of left-out frames predicted by the others through a Gaussian PSF
    of each of `widths` HR px. `windows`: the scene's normalised (T, h, w) frames and masks (True or
    1 where clear); `phases` (T, 2) their sub-pixel phases, LR px. 0 where no window has enough
    frames."""
    misfits: dict[float, list[float]] = {width: [] for width in widths}
    for frames, masks in windows:
        held_out = _HeldOut.of(torch.from_numpy(np.asarray(frames, np.float32)),
                               torch.from_numpy(np.asarray(masks, np.float32)),
                               torch.from_numpy(np.asarray(phases, np.float32)))
        if held_out is not None:
            for width in widths:
                misfits[width].append(held_out.misfit(width))
    return {width: float(np.mean(found)) if found else 0.0 for width, found in misfits.items()}


@dataclass(frozen=True)
class _HeldOut:
    """One window's left-out frames and, for each, the other frames and their registered mean (the
    back-projection's start, the same at every width)."""

    frames: torch.Tensor  # (T, h, w)
    masks: torch.Tensor  # (T, h, w) clear pixels counted: inside MARGIN
    phases: torch.Tensor  # (T, 2)
    left_out: torch.Tensor  # (B,) frame indices
    others: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (B, T-1, ...) frames, masks, phases
    start: torch.Tensor  # (B, 1, 3h, 3w)

    @classmethod
    def of(cls, frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor) -> _HeldOut | None:
        """A window's (T, h, w) frames and masks, (T, 2) phases; None when it has fewer than
        MIN_FRAMES frames or no frame with a clear pixel inside MARGIN."""
        count, height, breadth = frames.shape
        if count < MIN_FRAMES or min(height, breadth) <= 2 * MARGIN:
            return None
        inside = torch.zeros_like(masks)
        inside[:, MARGIN:-MARGIN, MARGIN:-MARGIN] = 1.0
        clear = (masks * inside).sum((-2, -1))
        left_out = [int(t) for t in torch.argsort(clear, descending=True, stable=True)[:HELD_OUT_FRAMES]
                    if clear[t] > 0]
        if not left_out:
            return None
        others = torch.tensor([[t for t in range(count) if t != j] for j in left_out])
        kept_frames, kept_masks, kept_phases = frames[others], masks[others], phases[others]
        start = masked_temporal_mean(
            resample_at_phases(fill_cloudy(kept_frames, kept_masks), kept_phases, "bicubic"),
            resample_at_phases(kept_masks, kept_phases, "bilinear"), dim=1)[:, None]
        return cls(frames, masks * inside, phases, torch.tensor(left_out), (kept_frames, kept_masks, kept_phases),
                   start)

    def misfit(self, width: float) -> float:
        """The left-out frames' mean squared residual (each frame's mean removed) through `width`."""
        sr = back_project(self.start, *self.others, HELD_OUT_STEPS, psf_sigma=width)
        column = psf_kernel(width).to(sr).sum(-1, keepdim=True)
        seen = observe_at_phases(blur_separable(sr, column), self.phases[self.left_out][:, None])[:, 0]
        counted = self.masks[self.left_out]
        residuals = (self.frames[self.left_out] - seen) * counted
        mean = residuals.sum((-2, -1), keepdim=True) / counted.sum((-2, -1), keepdim=True)
        squares = (((residuals - mean) * counted) ** 2).sum((-2, -1)) / counted.sum((-2, -1))
        return float(squares.double().mean())
