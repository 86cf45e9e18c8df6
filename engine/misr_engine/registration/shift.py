"""Sub-pixel registration of LR frames by phase cross-correlation, and stack alignment.

A shift (dy, dx) returned here says where the content of `moving` sits relative to
`reference`: positive = moved down / right, in pixels of the images given. Shifting `moving`
by (-dy, -dx) with ``resample.shift_image`` puts it onto the reference grid.

Why the steps of `estimate_shift` (measured on real Sentinel-2 B04 texture, 64 x 64
LR frames from ``simulate.degrade``: per-frame anisotropic PSF, gain/offset drift, noise,
clouds; 6 sites x 4 seeds, 210 frames):
* one plain cross-correlation with clouds filled by the clear mean errs by up to tens of
  pixels on cloudy frames (a strong negative lobe from large-scale trends wins the |peak|);
  whole-pixel masked normalised cross-correlation of high-passed images fixes that;
* an upsampled correlation of only the pixels clear in both images has no mask-edge bias;
* a least-squares polish (shift + gain + offset, analytic Jacobian) removes the correlation
  grid and taper biases: median error 0.008 LR px (clear frames) / 0.011 (cloudy,
  20-99% clear), 95th percentile 0.04 / 0.05, worst 0.08 px. 9 frames of 512 x 512 LR px
  take about 7 s on 2 busy cores. Phase-normalised (whitened) correlation was about twice less accurate on these
  aliased, noisy frames, so the correlation is not normalised.
* smoothing both images (NOISE_SIGMA, over clear pixels) keeps noise out of the correlations
  (scripts/registration_study.py, docs/evaluation/registration_study.log; 12 validation scenes
  per set, 64 x 64 LR, 9 frames): in distribution the median error fell from 0.0076 to 0.0049
  LR px (95th percentile 0.029 to 0.023); out of the training ranges (blur 2.4-3.2 HR px with
  halos, noise 2-4%, shifts to 2.5 px) from 0.065 to 0.040, and frames off by more than 0.25
  px from 29 to 8 of 105; with a field changed in some frames 0.0116 to 0.0094 (1 frame of 106
  off by more than 0.25 px, none before). Widths 0.5 and 1-2 px gave higher medians on every set.
* smoothed, noise and changed fields found spurious whole-pixel peaks: over small overlaps (pure
  noise: 20-27 px; a changed field: 43 px in a 64 px window), so the search keeps to shifts with
  MIN_OVERLAP of the clear pixels overlapping; and nearby (a changed field: 6 px), so the
  whole-pixel search also runs on the images as given, and the start whose refined shift agrees
  best wins.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.optimize import least_squares
from skimage.filters import window
from skimage.registration import phase_cross_correlation

from ..imaging.resample import shift_image
from ..imaging.robust import MAD_TO_STD, robust_std

WINDOW = ("tukey", 0.25)
"""Taper applied before the FFT: flat in the centre, cosine to zero over the outer eighths."""
HIGHPASS_SIGMA = 4.0
"""Local means (Gaussian, pixels) removed before correlating: trends would bias the peak."""
CLEAR_WEIGHT = 1.0 - 1e-3
"""A shifted mask (linear interpolation of 0/1) is clear only where it stays above this."""
NOISE_SIGMA = 0.7
"""Gaussian smoothing (pixels) of both images, over their clear pixels only, for the sub-pixel
steps, the agreement and one of the two whole-pixel searches: the same low-pass on both does not
move the shift and keeps noise out of the correlation peaks and the polish (chosen on
validation scenes, scripts/registration_study.py)."""
MIN_OVERLAP = 0.75
"""The whole-pixel search keeps to shifts where the clear pixels that overlap are at least this
share of the most that can (skimage's `overlap_ratio`): over smaller overlaps the masked
correlation of a few pixels finds spurious peaks (a changed field's edges matched 43 px away)."""
HIGHPASS_CLIP: float | None = 1.0
"""High-passed values are clipped to this many robust standard deviations (of the image's clear
high-passed values; None: not clipped) in every correlation, so that the edges of a field that
changed between the dates, far stronger than the texture, do not outweigh the whole scene.
Chosen on validation scenes (scripts/registration_study.py --clips, docs/evaluation/
registration_clip_study.log; 24 scenes per set, 64 x 64 LR, 9 frames): frames off by more than
0.25 LR px with a field 0.8-1.5 x the level brighter or darker in 30-50% of the frames 35 -> 13
of 213, with the training ranges' change 17 -> 12 of 213, out of the training ranges 14 -> 11 of
211 (worst 18.1 -> 0.9 px), in distribution unchanged (0 of 210, median 0.0057 px); 0.7 was as
good, 2 worse on every set with change."""
MIN_AGREEMENT = 0.2
"""Lowest high-pass correlation of the registered images for a shift to be trusted."""
MAX_RESIDUAL = 1.0
"""A refinement step larger than this (pixels) is a spurious peak: the estimate stops there."""
NEAR_SHIFT = 5.0
"""LR pixels from the products' own geolocation (no shift) within which a shift is near: where the
best candidate lies further off, the search also refines from no shift, and the far one must agree
better than every near one by FAR_MARGIN (shifts are the frames' relative to the reference frame: the out-of-range
set's reach 5 LR px, each frame off by up to 2.5; co-registered products are off by a fraction of a
pixel)."""
FAR_MARGIN: float | None = 0.6
"""How much better (high-pass correlation) a candidate further than NEAR_SHIFT from no shift must
agree than the best near one to be used (None: the best agreement wins, wherever it lies). A field
raised in 4 of 9 frames, the reference among them, threw an unchanged frame 33% clear 15.7 LR px
off: 17 px away its clear third matched the reference almost as well (0.76 against about 0.73 at
the right shift; tests/engine/registration/test_far_shifts.py). Chosen on 24 fresh validation
scenes per set by its rule (docs/evaluation/far_shift_rule.md, far_shift_validation.log) among
0.05-0.2: frames off by more than 0.25 LR px 54 -> 47 over six sets (low contrast 31 -> 25, worst
13.95 -> 3.37 px; surface change 1 -> 0, worst 23.7 -> 0.16 px; frames off by up to 6 LR px
still found as before); the SR: surface change +0.039 dB [-0.007, +0.122], low contrast +0.269
[+0.000, +0.808] (one scene), the other sets unchanged. Raised from 0.1 to 0.6 by a second rule
(docs/evaluation/far_margin_stage2_rule.md, far_margin_stage2_validation.log): a field raised in 4 of 9
frames, the reference not among them, threw a changed frame 12.2 LR px off at 0.1 (its far peak agreed
better by 0.2-0.4); on 24 fresh validation scenes per set 0.6 registered one more frame of the far-shifts
set (off by up to 6 LR px) and no frame of five other sets worse, the SR of five sets unchanged."""


def _clear(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Where `image` is usable: finite and, if a mask is given, clear."""
    finite = np.isfinite(image)
    return finite if mask is None else finite & np.asarray(mask, bool)


def _local_mean(image: np.ndarray, clear: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian (`sigma` pixels) mean of the clear pixels around every pixel: clouds do not bleed
    into their neighbours."""
    weight = ndimage.gaussian_filter(clear.astype(np.float64), sigma, mode="reflect")
    values = np.where(clear, image, 0.0).astype(np.float64)
    return ndimage.gaussian_filter(values, sigma, mode="reflect") / np.maximum(weight, 1e-6)


def _denoised(image: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """`image` smoothed over its clear pixels (`_local_mean` at NOISE_SIGMA); unchanged where not
    clear, or everywhere at sigma 0."""
    return np.where(clear, _local_mean(image, clear, NOISE_SIGMA), image) if NOISE_SIGMA > 0 else image


def _filled(image: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """`image` with its pixels that are not clear set to the mean of the clear ones."""
    return np.where(clear, image, image[clear].mean())


def _smoothed(reference: np.ndarray, moving: np.ndarray, reference_clear: np.ndarray,
              moving_clear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images smoothed over their clear pixels (`_denoised`), as the sub-pixel steps and the
    agreement compare them; `moving`'s other pixels as they were (filled)."""
    return _denoised(reference, reference_clear), np.where(moving_clear, _denoised(moving, moving_clear), moving)


def _highpass(image: np.ndarray, clear: np.ndarray, clip: bool = True) -> np.ndarray:
    """The image minus the local mean of its clear pixels (clipped at HIGHPASS_CLIP when `clip`);
    zero where not clear."""
    detail = np.where(clear, image - _local_mean(image, clear, HIGHPASS_SIGMA), 0.0)
    if not clip or HIGHPASS_CLIP is None or not clear.any():
        return detail
    bound = HIGHPASS_CLIP * MAD_TO_STD * float(np.median(np.abs(detail[clear])))
    return np.clip(detail, -bound, bound) if bound > 0 else detail


def _prepared(image: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """High-passed clear pixels, zero elsewhere, edges tapered: ready for an FFT correlation."""
    return _highpass(image, clear) * window(WINDOW, image.shape)


def shift_mask(mask: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Shift a boolean clear-mask; a pixel stays clear only if all its sources were clear.

    Pixels brought in from outside the image are not clear.
    """
    if dy == 0 and dx == 0:
        return np.asarray(mask, bool).copy()
    moved = shift_image(np.asarray(mask, np.float32), dy, dx, order=1, mode="constant")
    return moved > CLEAR_WEIGHT


def onto_common_grid(filled: np.ndarray, masks: np.ndarray, shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, h, w) frames (their unclear pixels already filled) and their masks moved by -`shifts`
    (in their own pixels) onto the grid the shifts are relative to (`shift_mask` for the masks)."""
    aligned = np.stack([shift_image(f, -dy, -dx) for f, (dy, dx) in zip(filled, shifts)])
    return aligned, np.stack([shift_mask(m, -dy, -dx) for m, (dy, dx) in zip(masks, shifts)])


def _phase_cross_correlation(*args: Any, **kwargs: Any) -> Any:
    """scikit-image's phase correlation without its warning about the RMS error of flat or empty
    images ("Could not determine RMS error ..."): we use only the shift, never that error."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Could not determine RMS error")
        return phase_cross_correlation(*args, **kwargs)


def _integer_shift(reference: np.ndarray, moving: np.ndarray, reference_clear: np.ndarray,
                   moving_clear: np.ndarray) -> np.ndarray:
    """Whole-pixel shift of `moving` by masked normalised cross-correlation (robust to clouds)."""
    shift = _phase_cross_correlation(_highpass(reference, reference_clear), _highpass(moving, moving_clear),
                                     reference_mask=reference_clear, moving_mask=moving_clear,
                                     overlap_ratio=MIN_OVERLAP)
    shift = shift[0] if isinstance(shift, tuple) else shift
    return -np.round(np.asarray(shift, np.float64))


def _phase_refinement(reference: np.ndarray, moving: np.ndarray, reference_clear: np.ndarray,
                      moving_clear: np.ndarray, start: np.ndarray, upsample_factor: int) -> np.ndarray:
    """One sub-pixel step: upsampled cross-correlation of the pixels clear in both images."""
    common = reference_clear & shift_mask(moving_clear, *(-start))
    if not common.any():
        return start
    back = shift_image(moving, *(-start))
    residual, _, _ = _phase_cross_correlation(
        _prepared(reference, common), _prepared(back, common),
        upsample_factor=upsample_factor, normalization=None)
    if np.abs(residual).max() > MAX_RESIDUAL:
        return start
    return start - residual  # skimage gives the shift that registers `moving`: the opposite


def _least_squares_polish(reference: np.ndarray, moving: np.ndarray, reference_clear: np.ndarray,
                          moving_clear: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Refine (dy, dx) with a gain and an offset by robust least squares on the common clear
    pixels (Cauchy loss scaled to the residuals' MAD: a changed field is an outlier, not a shift).

    The pixel set is fixed (common mask at `start`, eroded by one pixel), so nothing but the
    data pulls the estimate: no taper, no mask edge, no correlation-grid quantisation.
    """
    common = ndimage.binary_erosion(reference_clear & shift_mask(moving_clear, *(-start)),
                                    iterations=1, border_value=0)
    if common.sum() < 16:
        return start
    target = reference[common]
    cache: dict[tuple[float, float], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def moved(dy: float, dx: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`moving` shifted back by (dy, dx) and its y / x derivatives, on the common pixels."""
        if (dy, dx) not in cache:
            image = shift_image(moving, -dy, -dx)
            cache.clear()
            cache[dy, dx] = tuple(a[common] for a in (image, *np.gradient(image)))
        return cache[dy, dx]

    def residuals(params: np.ndarray) -> np.ndarray:
        dy, dx, gain, offset = params
        return gain * moved(dy, dx)[0] + offset - target

    def jacobian(params: np.ndarray) -> np.ndarray:
        dy, dx, gain, _ = params
        image, along_y, along_x = moved(dy, dx)
        return np.stack([gain * along_y, gain * along_x, image, np.ones_like(image)], axis=1)

    scale = float(np.std(target)) or 1.0
    first = np.array([start[0], start[1], 1.0, float(target.mean() - moving[moving_clear].mean())])
    first_residuals = residuals(first)
    noise = robust_std(first_residuals)
    # robust (Cauchy) loss: pixels where the surface changed between the dates have residuals
    # far above the noise and do not pull the shift (a plain least squares moved it 0.1 px)
    fit = least_squares(residuals, first, jac=jacobian, method="trf", loss="cauchy",
                        f_scale=max(noise, 1e-6 * scale), x_scale=[1.0, 1.0, 1.0, scale])
    if not fit.success or np.abs(fit.x[:2] - start).max() > MAX_RESIDUAL:
        return start
    return fit.x[:2]


def _agreement(reference: np.ndarray, moving: np.ndarray, reference_clear: np.ndarray,
               moving_clear: np.ndarray, shift: np.ndarray, clip: bool = True) -> float:
    """Correlation of the high-passed images (clipped when `clip`) on their common clear pixels
    once `shift` is undone."""
    moved_clear = shift_mask(moving_clear, *(-shift))
    common = reference_clear & moved_clear
    if common.sum() < 16:
        return -1.0
    a = _highpass(reference, common, clip)[common]
    b = _highpass(shift_image(moving, *(-shift)), common, clip)[common]
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else -1.0


def agreement(reference: np.ndarray, moving: np.ndarray, reference_mask: np.ndarray, moving_mask: np.ndarray,
              shift: np.ndarray) -> float:
    """How well `shift` registers `moving` onto `reference`: the clipped high-pass correlation of
    their common clear pixels, on the images smoothed as `estimate_shift` compares its candidates."""
    reference_clear, moving_clear = _clear(reference, reference_mask), _clear(moving, moving_mask)
    if not reference_clear.any() or not moving_clear.any():
        return -1.0
    moving = _filled(np.asarray(moving, np.float64), moving_clear)
    reference, moving = _smoothed(np.asarray(reference, np.float64), moving, reference_clear, moving_clear)
    return _agreement(reference, moving, reference_clear, moving_clear, np.asarray(shift, np.float64))


def estimate_shift(reference: np.ndarray, moving: np.ndarray,
                   reference_mask: np.ndarray | None = None,
                   moving_mask: np.ndarray | None = None,
                   upsample_factor: int = 20, polish: bool = True) -> tuple[float, float]:
    """Sub-pixel translation (dy, dx) of `moving` relative to `reference` (True in masks = clear).

    1. whole pixels: masked normalised cross-correlation (clouds do not matter), over shifts
       that keep MIN_OVERLAP of the clear pixels overlapping, of the images as given and of
       both smoothed over their clear pixels (NOISE_SIGMA): one or two starts;
    2. sub-pixel: upsampled cross-correlation of the pixels clear in both, after undoing 1;
    3. if `polish`: least squares (shift, gain, offset) on those pixels, from 2;
    2 and 3 on the smoothed images, from each start: the best agreement wins, but one further than
    NEAR_SHIFT from no shift only by more than FAR_MARGIN over the best near one (refined from no
    shift too: the products' geolocation);
    The result is kept only if it matches the images better than no shift at all and with a
    high-pass correlation of at least MIN_AGREEMENT, by the clipped or the plain correlation
    (clipped: a changed field's edges do not decide; plain: the smoothing of a half-pixel
    interpolation does not); otherwise (texture drowned in noise) the shift is (0, 0), i.e. the
    products' own geolocation is trusted.
    """
    reference = np.asarray(reference, np.float64)
    moving = np.asarray(moving, np.float64)
    reference_clear, moving_clear = _clear(reference, reference_mask), _clear(moving, moving_mask)
    if not reference_clear.any() or not moving_clear.any():
        raise ValueError("cannot register a frame without clear pixels")
    moving = _filled(moving, moving_clear)
    starts = {tuple(_integer_shift(reference, moving, reference_clear, moving_clear))}
    reference, moving = _smoothed(reference, moving, reference_clear, moving_clear)
    starts.add(tuple(_integer_shift(reference, moving, reference_clear, moving_clear)))

    def refined(start: tuple[float, float]) -> np.ndarray:
        shift = _phase_refinement(reference, moving, reference_clear, moving_clear, np.array(start),
                                  upsample_factor)
        return _least_squares_polish(reference, moving, reference_clear, moving_clear, shift) if polish else shift

    candidates = [refined(start) for start in sorted(starts)]
    agreements = [_agreement(reference, moving, reference_clear, moving_clear, c) for c in candidates]
    best = int(np.argmax(agreements))
    if FAR_MARGIN is not None and np.abs(candidates[best]).max() > NEAR_SHIFT:
        candidates.append(refined((0.0, 0.0)))  # from the products' own geolocation
        agreements.append(_agreement(reference, moving, reference_clear, moving_clear, candidates[-1]))
        near = max((index for index, c in enumerate(candidates) if np.abs(c).max() <= NEAR_SHIFT),
                   key=agreements.__getitem__, default=None)
        if near is not None and agreements[near] >= agreements[best] - FAR_MARGIN:
            best = near
    shift, agreement = candidates[best], agreements[best]  # the clipped agreement, already measured

    def beats_no_shift(agreement: float, clip: bool) -> bool:
        return agreement >= max(MIN_AGREEMENT, _agreement(reference, moving, reference_clear, moving_clear,
                                                          np.zeros(2), clip))

    if not (beats_no_shift(agreement, True) or beats_no_shift(
            _agreement(reference, moving, reference_clear, moving_clear, shift, False), False)):
        shift = np.zeros(2)  # a spurious peak (no texture above the noise): trust geolocation
    return float(shift[0]), float(shift[1])
