"""Classical MISR pipelines (no learning), for comparison tables and as fall-backs.

Each takes LR `frames` (T, H, W) float32 and `masks` (T, H, W) bool (True = clear) and
returns an SR image (SCALE*H, SCALE*W) float32, NaN where no frame was clear. Cloudy pixels
are first filled with the temporal mean of the clear frames, so interpolation never spreads
cloud radiance next to a cloud edge.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import SCALE
from ..imaging.compositing import fill_masked, masked_mean
from ..imaging.deconvolution import WIENER_BALANCE, WIENER_SIGMA, wiener_deconvolve
from ..imaging.resample import forward_model, gaussian_blur, shift_image, upsample
from ..registration.reference import clearest_frame
from ..registration.shift import shift_mask
from ..registration.stack import align_stack, register_stack

IBP_SIGMA = 1.2
"""Gaussian sensor PSF (HR px, before the 3x3 area integration) assumed by `ibp`: best
with `simulate.Degradation()` stacks, 0.1 dB below the true 1.0 on sigma-1.0 stacks."""
IBP_ITERATIONS = 10

Baseline = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _upsampled(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Bicubic x SCALE of an LR image, NaN on the HR pixels of invalid LR pixels."""
    if not valid.any():
        return np.full((image.shape[0] * SCALE, image.shape[1] * SCALE), np.nan, np.float32)
    filled = np.where(valid, image, image[valid].mean())
    hr_valid = upsample(valid.astype(np.float32), mode="nearest") > 0.5
    return np.where(hr_valid, upsample(filled), np.nan).astype(np.float32)


def bicubic_masked_mean(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Bicubic x3 of the per-pixel temporal mean of the clear frames (no registration)."""
    mean, any_clear = masked_mean(frames, masks)
    return _upsampled(mean, any_clear)


def bicubic_clearest(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Bicubic x3 of the clearest frame, its cloudy pixels filled by the other frames' mean."""
    _, any_clear = masked_mean(frames, masks)
    return _upsampled(fill_masked(frames, masks)[clearest_frame(masks, frames)], any_clear)


def registered_mean(frames: np.ndarray, masks: np.ndarray,
                    shifts: np.ndarray | None = None) -> np.ndarray:
    """Register to the clearest frame, bicubic x3, shift onto its HR grid, masked mean.

    `shifts` (T, 2) in LR px as from ``registration.register_stack``, estimated if None.
    """
    masks = np.asarray(masks, bool) & np.isfinite(frames)
    if shifts is None:
        shifts = register_stack(frames, masks)
    hr_frames = upsample(fill_masked(frames, masks))
    hr_masks = upsample(masks.astype(np.float32), mode="nearest") > 0.5
    mean, any_clear = masked_mean(*align_stack(hr_frames, hr_masks, np.asarray(shifts) * SCALE))
    return np.where(any_clear, mean, np.nan).astype(np.float32)


def registered_mean_wiener(frames: np.ndarray, masks: np.ndarray,
                           psf_sigma: float = WIENER_SIGMA, balance: float = WIENER_BALANCE,
                           shifts: np.ndarray | None = None) -> np.ndarray:
    """`registered_mean` followed by Wiener deconvolution of a Gaussian PSF (sigma in HR px)."""
    return wiener_deconvolve(registered_mean(frames, masks, shifts), psf_sigma, balance)


def _radiometric_fit(frame: np.ndarray, simulated: np.ndarray) -> tuple[float, float]:
    """Gain and offset mapping the simulated frame onto the observed one (least squares)."""
    if frame.size < 2 or np.ptp(simulated) == 0:
        return 1.0, float(np.mean(frame - simulated)) if frame.size else 0.0
    gain, offset = np.polyfit(simulated, frame, 1)
    return float(np.clip(gain, 0.5, 2.0)), float(offset)


def ibp(frames: np.ndarray, masks: np.ndarray, psf_sigma: float = IBP_SIGMA,
        iterations: int = IBP_ITERATIONS, shifts: np.ndarray | None = None) -> np.ndarray:
    """Iterative back-projection (Irani & Peleg 1991) started from `registered_mean`.

    Each iteration simulates every LR frame from the estimate (``resample.forward_model``:
    Gaussian PSF, shift, area decimation), matches its gain and offset to the observed
    frame (dates differ radiometrically), and adds the mean over clear frames of the
    residuals, bicubic-upsampled and shifted back onto the reference grid.
    """
    masks = np.asarray(masks, bool) & np.isfinite(frames)
    if shifts is None:
        shifts = register_stack(frames, masks)
    estimate = registered_mean(frames, masks, shifts)
    valid = np.isfinite(estimate)
    if not valid.any():
        return estimate
    estimate = np.where(valid, estimate, estimate[valid].mean()).astype(np.float64)
    hr_masks = upsample(masks.astype(np.float32), mode="nearest") > 0.5
    back_masks = np.stack([shift_mask(m, -SCALE * dy, -SCALE * dx)
                           for m, (dy, dx) in zip(hr_masks, shifts)])
    weight = np.maximum(back_masks.sum(axis=0), 1)
    for _ in range(iterations):
        blurred = gaussian_blur(estimate, psf_sigma)
        residuals = np.zeros(frames.shape, np.float32)
        for t, (frame, mask, (dy, dx)) in enumerate(zip(frames, masks, shifts)):
            simulated = forward_model(blurred, dy, dx, psf_sigma=0.0)
            gain, offset = _radiometric_fit(frame[mask], simulated[mask])
            residuals[t] = np.where(mask, (frame - offset) / gain - simulated, 0.0)
        back = [shift_image(r, -SCALE * dy, -SCALE * dx)
                for r, (dy, dx) in zip(upsample(residuals), shifts)]
        estimate += np.sum(np.where(back_masks, back, 0.0), axis=0) / weight
    return np.where(valid, estimate, np.nan).astype(np.float32)


BASELINES: dict[str, Baseline] = {
    "bicubic_clearest": bicubic_clearest,
    "bicubic_masked_mean": bicubic_masked_mean,
    "registered_mean": registered_mean,
    "registered_mean_wiener": registered_mean_wiener,
    "ibp": ibp,
}
"""Name -> pipeline (frames, masks) -> SR, in increasing order of sophistication."""
