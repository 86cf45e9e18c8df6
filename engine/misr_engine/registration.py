"""Sub-pixel registration of LR frames by phase cross-correlation, and stack alignment.

A shift (dy, dx) returned here says where the content of `moving` sits relative to
`reference`: positive = moved down / right, in pixels of the images given. Shifting `moving`
by (-dy, -dx) with ``resample.shift_image`` puts it onto the reference grid.

Measured on real Sentinel-2 texture (64 x 64 LR frames simulated with a Gaussian PSF of
sigma 1 HR px, x3 area decimation, noise 2e-3 on reflectances of about 0.07): a single
correlation errs by up to 0.1-0.2 LR px; two refinements (re-correlating after undoing the
estimate) and a second pass against the fused stack bring the worst error to about 0.05 px.
The cross-correlation is not phase-normalised: on aliased, noisy LR frames the whitened
(phase-only) correlation was about twice less accurate.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.optimize import least_squares
from skimage.filters import window
from skimage.registration import phase_cross_correlation

from .resample import shift_image

WINDOW = ("tukey", 0.25)
"""Taper applied before the FFT: flat in the centre, cosine to zero over the outer eighths."""
HIGHPASS_SIGMA = 4.0
"""Local means (Gaussian, pixels) removed before correlating: trends would bias the peak."""
CLEAR_WEIGHT = 1.0 - 1e-3
"""A shifted mask (linear interpolation of 0/1) is clear only where it stays above this."""
MAX_RESIDUAL = 1.0
"""A refinement step larger than this (pixels) is a spurious peak: the estimate stops there."""


def _clear(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Where `image` is usable: finite and, if a mask is given, clear."""
    finite = np.isfinite(image)
    return finite if mask is None else finite & np.asarray(mask, bool)


def _prepared(image: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """Remove the local mean of the clear pixels, zero the rest, taper the edges."""
    image = np.where(clear, image, 0.0).astype(np.float64)
    weight = ndimage.gaussian_filter(clear.astype(np.float64), HIGHPASS_SIGMA, mode="reflect")
    local = ndimage.gaussian_filter(image, HIGHPASS_SIGMA, mode="reflect") / np.maximum(weight, 1e-6)
    return np.where(clear, image - local, 0.0) * window(WINDOW, image.shape)


def shift_mask(mask: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Shift a boolean clear-mask; a pixel stays clear only if all its sources were clear.

    Pixels brought in from outside the image are not clear.
    """
    if dy == 0 and dx == 0:
        return np.asarray(mask, bool).copy()
    moved = shift_image(np.asarray(mask, np.float32), dy, dx, order=1, mode="constant")
    return moved > CLEAR_WEIGHT


def _integer_shift(reference: np.ndarray, moving: np.ndarray, reference_clear: np.ndarray,
                   moving_clear: np.ndarray) -> np.ndarray:
    """Whole-pixel shift of `moving` by masked normalised cross-correlation (robust to clouds)."""
    shift = phase_cross_correlation(np.where(reference_clear, reference, 0.0),
                                    np.where(moving_clear, moving, 0.0),
                                    reference_mask=reference_clear, moving_mask=moving_clear)
    shift = shift[0] if isinstance(shift, tuple) else shift
    return -np.round(np.asarray(shift, np.float64))


def _phase_refinement(reference: np.ndarray, moving: np.ndarray, reference_clear: np.ndarray,
                      moving_clear: np.ndarray, start: np.ndarray, upsample_factor: int) -> np.ndarray:
    """One sub-pixel step: upsampled cross-correlation of the pixels clear in both images."""
    common = reference_clear & shift_mask(moving_clear, *(-start))
    if not common.any():
        return start
    back = shift_image(moving, *(-start))
    residual, _, _ = phase_cross_correlation(
        _prepared(reference, common), _prepared(back, common),
        upsample_factor=upsample_factor, normalization=None)
    if np.abs(residual).max() > MAX_RESIDUAL:
        return start
    return start - residual  # skimage gives the shift that registers `moving`: the opposite


def _least_squares_polish(reference: np.ndarray, moving: np.ndarray, reference_clear: np.ndarray,
                          moving_clear: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Refine (dy, dx) with a gain and an offset by least squares on the common clear pixels.

    The pixel set is fixed (common mask at `start`, eroded by one pixel), so nothing but the
    data pulls the estimate: no taper, no mask edge, no correlation-grid quantisation.
    """
    common = ndimage.binary_erosion(reference_clear & shift_mask(moving_clear, *(-start)),
                                    iterations=1, border_value=0)
    if common.sum() < 16:
        return start
    target = reference[common]

    def residuals(params: np.ndarray) -> np.ndarray:
        dy, dx, gain, offset = params
        return gain * shift_image(moving, -dy, -dx)[common] + offset - target

    scale = float(np.std(target)) or 1.0
    first = np.array([start[0], start[1], 1.0, float(target.mean() - moving[moving_clear].mean())])
    fit = least_squares(residuals, first, method="lm", x_scale=[1.0, 1.0, 1.0, scale])
    if not fit.success or np.abs(fit.x[:2] - start).max() > MAX_RESIDUAL:
        return start
    return fit.x[:2]


def estimate_shift(reference: np.ndarray, moving: np.ndarray,
                   reference_mask: np.ndarray | None = None,
                   moving_mask: np.ndarray | None = None,
                   upsample_factor: int = 20, polish: bool = True) -> tuple[float, float]:
    """Sub-pixel translation (dy, dx) of `moving` relative to `reference` (True in masks = clear).

    1. whole pixels: masked normalised cross-correlation (clouds do not matter);
    2. sub-pixel: upsampled cross-correlation of the pixels clear in both, after undoing 1;
    3. if `polish`: least squares (shift, gain, offset) on those pixels, from 2.
    """
    reference = np.asarray(reference, np.float64)
    moving = np.asarray(moving, np.float64)
    reference_clear, moving_clear = _clear(reference, reference_mask), _clear(moving, moving_mask)
    if not reference_clear.any() or not moving_clear.any():
        raise ValueError("cannot register a frame without clear pixels")
    moving = np.where(moving_clear, moving, moving[moving_clear].mean())
    shift = _integer_shift(reference, moving, reference_clear, moving_clear)
    shift = _phase_refinement(reference, moving, reference_clear, moving_clear, shift,
                              upsample_factor)
    if polish:
        shift = _least_squares_polish(reference, moving, reference_clear, moving_clear, shift)
    return float(shift[0]), float(shift[1])


def clearest_frame(masks: np.ndarray) -> int:
    """Index of the frame with the most clear pixels (the first one on ties)."""
    return int(np.argmax(np.asarray(masks, bool).reshape(len(masks), -1).sum(axis=1)))


def masked_mean(frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean over clear frames (NaN where none is clear) and the any-clear map."""
    masks = np.asarray(masks, bool) & np.isfinite(frames)
    count = masks.sum(axis=0)
    total = np.where(masks, frames, 0.0).sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (total / count).astype(np.float32)
    return mean, count > 0


def fill_masked(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Frames with cloudy pixels replaced by the temporal masked mean (else the clear mean).

    Interpolating the filled frames then spreads plausible values, not cloud, near cloud edges.
    """
    mean, any_clear = masked_mean(frames, masks)
    if any_clear.any():
        mean = np.where(any_clear, mean, mean[any_clear].mean())
    else:
        mean = np.zeros_like(mean)
    clear = np.asarray(masks, bool) & np.isfinite(frames)
    return np.where(clear, frames, mean[None]).astype(np.float32)


def align_stack(frames: np.ndarray, masks: np.ndarray,
                shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shift every (filled) frame and its mask by -shift onto the reference grid.

    `shifts` must be in pixels of `frames` (multiply LR shifts by SCALE for HR frames).
    """
    filled = fill_masked(frames, masks)
    aligned = np.stack([shift_image(f, -dy, -dx) for f, (dy, dx) in zip(filled, shifts)])
    aligned_masks = np.stack([shift_mask(m, -dy, -dx) for m, (dy, dx) in zip(masks, shifts)])
    return aligned.astype(np.float32), aligned_masks


def _shifts_to(reference: np.ndarray, reference_mask: np.ndarray, frames: np.ndarray,
               masks: np.ndarray, upsample_factor: int) -> np.ndarray:
    """Shift of every frame relative to one reference image (zero for frames without data)."""
    shifts = np.zeros((len(frames), 2))
    for t, (frame, mask) in enumerate(zip(frames, masks)):
        if mask.any():
            shifts[t] = estimate_shift(reference, frame, reference_mask, mask, upsample_factor)
    return shifts


def register_stack(frames: np.ndarray, masks: np.ndarray, upsample_factor: int = 20) -> np.ndarray:
    """Shifts (T, 2) of every frame relative to the clearest one (whose shift is (0, 0)).

    Two passes: every frame against the clearest frame, then every frame against the mean of
    the stack aligned with those shifts (less noisy and less aliased than any single frame),
    re-anchored on the clearest frame. Frames without any clear pixel get a zero shift.
    """
    frames = np.asarray(frames, np.float32)
    masks = np.asarray(masks, bool) & np.isfinite(frames)
    ref = clearest_frame(masks)
    shifts = _shifts_to(frames[ref], masks[ref], frames, masks, upsample_factor)
    shifts[ref] = 0.0
    fused, fused_clear = masked_mean(*align_stack(frames, masks, shifts))
    if fused_clear.any():
        shifts = _shifts_to(fused, fused_clear, frames, masks, upsample_factor)
        shifts -= shifts[ref]
    shifts[~masks.reshape(len(masks), -1).any(axis=1)] = 0.0
    return shifts
