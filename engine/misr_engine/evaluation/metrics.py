"""Quality metrics: the Proba-V cPSNR / cSSIM, stratified and LR-fidelity scores, uncertainty.

cPSNR is the official Proba-V challenge definition: the SR image is cropped by `border`
pixels, the HR image is cropped at every one of the (2*border + 1)^2 positions (49 for
border 3), the brightness bias (mean of HR - SR over the clear pixels) is removed, and the
best position counts. NaN pixels of SR, like masked HR pixels, are not clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from scipy import integrate, stats
from skimage.filters import sobel
from skimage.metrics import structural_similarity

from ..imaging.resample import forward_model

DEFAULT_FRACTIONS = np.linspace(0.0, 0.99, 100)
"""Fractions of pixels removed (most uncertain first) for the sparsification curves."""
LAPLACE_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)
"""Nominal coverage levels checked by `laplace_calibration`."""


@dataclass(frozen=True)
class Alignment:
    """SR and HR crops at one of the cPSNR positions, SR corrected by the brightness bias."""

    sr: np.ndarray  # float64 crop of SR + bias
    hr: np.ndarray  # float64 HR crop at `offset`
    mask: np.ndarray  # bool, clear in HR and finite in SR
    offset: tuple[int, int]  # (u, v) of the HR crop; (border, border) = no shift
    bias: float  # mean of HR - SR over the clear pixels
    cmse: float  # mean of (HR - SR - bias)^2 over the clear pixels

    @property
    def error(self) -> np.ndarray:
        """HR - corrected SR, NaN where not clear (for error maps)."""
        return np.where(self.mask, self.hr - self.sr, np.nan)


def _to_psnr(mse: float, data_range: float) -> float:
    """PSNR in dB of a mean squared error (inf when it is 0, NaN when undefined)."""
    if not np.isfinite(mse):
        return float("nan")
    if mse <= 0:
        return float("inf")
    return float(-10.0 * np.log10(mse / data_range ** 2))


def _candidate_alignments(sr: np.ndarray, hr: np.ndarray, hr_mask: np.ndarray | None,
                          border: int) -> Iterator[Alignment]:
    """Every cPSNR position (u, v) in 0..2*border with at least one clear pixel."""
    if sr.shape != hr.shape:
        raise ValueError(f"SR shape {sr.shape} differs from HR shape {hr.shape}")
    height, width = hr.shape
    sr_crop = np.asarray(sr, np.float64)[border:height - border, border:width - border]
    hr = np.asarray(hr, np.float64)
    clear = np.isfinite(hr) if hr_mask is None else np.asarray(hr_mask, bool) & np.isfinite(hr)
    size = sr_crop.shape
    for u in range(2 * border + 1):
        for v in range(2 * border + 1):
            hr_crop = hr[u:u + size[0], v:v + size[1]]
            mask = clear[u:u + size[0], v:v + size[1]] & np.isfinite(sr_crop)
            if not mask.any():
                continue
            diff = hr_crop[mask] - sr_crop[mask]
            bias = float(diff.mean())
            cmse = float(np.mean((diff - bias) ** 2))
            yield Alignment(sr_crop + bias, hr_crop, mask, (u, v), bias, cmse)


def best_alignment(sr: np.ndarray, hr: np.ndarray, hr_mask: np.ndarray | None = None,
                   border: int = 3) -> Alignment | None:
    """The position (and bias) with the lowest cMSE; None if no pixel is clear anywhere."""
    return min(_candidate_alignments(sr, hr, hr_mask, border), key=lambda a: a.cmse, default=None)


def cpsnr(sr: np.ndarray, hr: np.ndarray, hr_mask: np.ndarray | None = None, border: int = 3,
          data_range: float = 1.0) -> float:
    """Proba-V cPSNR (dB): best over the (2*border+1)^2 crops of -10 log10(cMSE / range^2)."""
    best = best_alignment(sr, hr, hr_mask, border)
    return float("nan") if best is None else _to_psnr(best.cmse, data_range)


def _masked_ssim(alignment: Alignment, data_range: float) -> float:
    """Mean SSIM over the clear pixels (unclear SR pixels are set to HR so they add no error)."""
    hr = np.where(np.isfinite(alignment.hr), alignment.hr, 0.0)
    sr = np.where(alignment.mask, alignment.sr, hr)
    _, ssim_map = structural_similarity(hr, sr, data_range=data_range, full=True)
    return float(ssim_map[alignment.mask].mean())


def cssim(sr: np.ndarray, hr: np.ndarray, hr_mask: np.ndarray | None = None, border: int = 3,
          data_range: float = 1.0) -> float:
    """cSSIM: best over the same crops and bias correction of the SSIM on the clear area.

    As in the RAMS / PIUnet evaluations, the best position is the one with the highest SSIM.
    """
    scores = [_masked_ssim(a, data_range) for a in _candidate_alignments(sr, hr, hr_mask, border)]
    return max(scores, default=float("nan"))


def level_error(sr: np.ndarray, hr: np.ndarray, hr_mask: np.ndarray | None = None) -> float:
    """How far the SR's level is from the target's, in % of the target's: |mean SR - mean HR| / |mean
    HR| over the pixels clear in HR and finite in SR. cPSNR removes this bias before it scores; an
    analyst who compares the SR with the frames, or maps it to reflectance, sees it."""
    clear = np.isfinite(sr) & np.isfinite(hr) & (True if hr_mask is None else np.asarray(hr_mask, bool))
    if not clear.any():
        return float("nan")
    target = float(np.mean(hr[clear], dtype=np.float64))
    return 100.0 * abs(float(np.mean(sr[clear], dtype=np.float64)) - target) / abs(target) if target else float("nan")


def gradient_stratified_psnr(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray | None = None,
                             n_bins: int = 3, border: int = 3,
                             data_range: float = 1.0) -> np.ndarray:
    """cPSNR-aligned PSNR per quantile bin of HR gradient magnitude, from flat to textured.

    Low-gradient pixels dominate a global PSNR; the top bin tells how well edges are restored.
    """
    best = best_alignment(sr, hr, mask, border)
    if best is None:
        return np.full(n_bins, np.nan)
    hr_filled = np.where(best.mask, best.hr, best.hr[best.mask].mean())
    gradient = sobel(hr_filled)[best.mask]
    squared = (best.hr - best.sr)[best.mask] ** 2
    edges = np.quantile(gradient, np.linspace(0, 1, n_bins + 1)[1:-1])
    bins = np.digitize(gradient, edges)
    return np.array([_to_psnr(float(squared[bins == b].mean()) if (bins == b).any() else np.nan,
                              data_range) for b in range(n_bins)])


def lr_fidelity(sr: np.ndarray, frames: np.ndarray, masks: np.ndarray, shifts: np.ndarray,
                psf_sigma: float, data_range: float = 1.0, correct_bias: bool = True) -> np.ndarray:
    """PSNR (T,) of each LR frame against the SR re-degraded onto that frame's grid.

    The SR goes through ``resample.forward_model`` (Gaussian PSF of `psf_sigma` HR px, the
    frame's shift in LR px, area decimation). Only LR pixels clear in the frame and fully
    covered by finite SR pixels count; with `correct_bias` the mean difference (radiometric
    drift between dates) is removed first. NaN for a frame without such pixels.
    """
    valid = np.isfinite(sr)
    filled = np.where(valid, sr, sr[valid].mean() if valid.any() else 0.0).astype(np.float64)
    scores = []
    for frame, mask, (dy, dx) in zip(frames, masks, shifts):
        coverage = forward_model(valid.astype(np.float64), dy, dx, psf_sigma)
        usable = np.asarray(mask, bool) & np.isfinite(frame) & (coverage > 1 - 1e-3)
        if not usable.any():
            scores.append(float("nan"))
            continue
        diff = (frame - forward_model(filled, dy, dx, psf_sigma))[usable]
        if correct_bias:
            diff = diff - diff.mean()
        scores.append(_to_psnr(float(np.mean(diff ** 2)), data_range))
    return np.array(scores)


def _finite_pairs(*arrays: np.ndarray) -> list[np.ndarray]:
    """Flattened arrays restricted to the pixels finite in all of them."""
    flat = [np.asarray(a, np.float64).ravel() for a in arrays]
    keep = np.logical_and.reduce([np.isfinite(a) for a in flat])
    return [a[keep] for a in flat]


def sparsification_curve(error: np.ndarray, uncertainty: np.ndarray,
                         fractions: Sequence[float] = DEFAULT_FRACTIONS) -> np.ndarray:
    """Mean error of the pixels left after removing each fraction of the most uncertain ones.

    `error` is a non-negative per-pixel error (e.g. |HR - SR|); NaN pixels are ignored.
    """
    error, uncertainty = _finite_pairs(error, uncertainty)
    if error.size == 0:
        return np.full(len(fractions), np.nan)
    ordered = error[np.argsort(uncertainty, kind="stable")]  # most certain first
    running_mean = np.cumsum(ordered) / np.arange(1, ordered.size + 1)
    kept = np.maximum(np.ceil((1.0 - np.asarray(fractions)) * ordered.size).astype(int), 1)
    return running_mean[kept - 1]


def oracle_sparsification_curve(error: np.ndarray,
                                fractions: Sequence[float] = DEFAULT_FRACTIONS) -> np.ndarray:
    """The best possible sparsification curve: pixels removed by decreasing true error."""
    return sparsification_curve(error, error, fractions)


def ause(error: np.ndarray, uncertainty: np.ndarray,
         fractions: Sequence[float] = DEFAULT_FRACTIONS) -> float:
    """Area Under the Sparsification Error: area between the curve and the oracle (0 = ideal)."""
    gap = sparsification_curve(error, uncertainty, fractions) - oracle_sparsification_curve(
        error, fractions)
    return float(integrate.trapezoid(gap, np.asarray(fractions, np.float64)))


def spearman(uncertainty: np.ndarray, abs_error: np.ndarray) -> float:
    """Spearman rank correlation between predicted uncertainty and absolute error."""
    uncertainty, abs_error = _finite_pairs(uncertainty, abs_error)
    if uncertainty.size < 2:
        return float("nan")
    return float(stats.spearmanr(uncertainty, abs_error)[0])


def laplace_calibration(error: np.ndarray, scale: np.ndarray,
                        levels: Sequence[float] = LAPLACE_LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """(nominal, observed): fraction of |error| within each central Laplace(0, scale) interval.

    `scale` is the Laplace scale b (PIUnet's exp(delta)); the interval holding a fraction p
    is |e| <= -b ln(1 - p). A calibrated model gives observed == nominal.
    """
    error, scale = _finite_pairs(error, scale)
    nominal = np.asarray(levels, np.float64)
    if error.size == 0:
        return nominal, np.full(nominal.shape, np.nan)
    radius = -scale[None, :] * np.log1p(-nominal[:, None])
    observed = (np.abs(error)[None, :] <= radius).mean(axis=1)
    return nominal, observed
