"""Semi-simulated LR time series from real HR imagery.

Each LR frame is the HR image seen through a realistic acquisition, all in the Fourier domain
(exact sub-pixel shifts, no interpolation artefacts):

    LR_t = decimate_x3( shift_t( PSF_t * HR ) ) * gain_t + offset_t + noise_t, then clouds_t

* shift_t: misregistration, uniform in [-max_shift, max_shift] LR pixels per axis (up to
  ~1.5 LR pixels between two frames with the default 0.75... 1.0);
* PSF_t: anisotropic Gaussian (random sigmas and orientation) times the 3x3 pixel-integration
  box, different for every frame;
* gain/offset: radiometric drift between dates;
* noise: Gaussian sensor noise;
* clouds: smooth random shapes, bright, with their mask (most frames nearly clear, some
  partly cloudy, a few mostly cloudy).

The decimation follows the engine's pixel-area convention: LR pixel i is centred on HR pixel
3i + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .. import SCALE


@dataclass(frozen=True)
class Degradation:
    """Ranges of the simulated acquisition conditions (HR pixels unless stated)."""

    max_shift_lr: float = 1.0  # per axis, LR pixels, per frame (pairwise up to 2x this)
    psf_sigma: tuple[float, float] = (0.7, 1.8)  # Gaussian sigma range per axis, HR pixels
    gain: tuple[float, float] = (0.92, 1.08)
    offset_fraction: float = 0.03  # std of the offset, as a fraction of the mean level
    noise_fraction: tuple[float, float] = (0.002, 0.012)  # noise std / mean level
    cloud_probability: float = 0.5  # chance that a frame has clouds at all
    cloud_cover: tuple[float, float] = (0.02, 0.7)  # cover of a cloudy frame
    full_cloud_probability: float = 0.03  # chance that a frame is entirely cloudy


@dataclass
class SimulatedStack:
    frames: np.ndarray  # (T, h, w) float32
    masks: np.ndarray  # (T, h, w) bool, True = clear
    shifts: np.ndarray  # (T, 2) LR pixels (dy, dx)
    psf_sigmas: np.ndarray  # (T, 2) HR pixels
    hr: np.ndarray  # (SCALE*h, SCALE*w) float32, aligned with the LR grid


def transfer_function(shape: tuple[int, int], sigma: tuple[float, float], angle: float,
                      shift: tuple[float, float]) -> np.ndarray:
    """Fourier transfer function of a rotated anisotropic Gaussian x pixel box x shift (HR px)."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    cos, sin = np.cos(angle), np.sin(angle)
    fu, fv = cos * fx + sin * fy, -sin * fx + cos * fy
    gaussian = np.exp(-2 * np.pi ** 2 * ((sigma[1] * fu) ** 2 + (sigma[0] * fv) ** 2))
    box = np.sinc(SCALE * fy) * np.sinc(SCALE * fx)
    phase = np.exp(-2j * np.pi * (fy * shift[0] + fx * shift[1]))
    return gaussian * box * phase


def cloud_mask(shape: tuple[int, int], cover: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random cloud field thresholded to the requested cover; True = cloud."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(shape) / rng.uniform(6, 16))
    threshold = np.quantile(field, 1.0 - cover)
    return field > threshold


def degrade(hr_with_margin: np.ndarray, n_frames: int, rng: np.random.Generator,
            conditions: Degradation = Degradation(), margin: int = 12) -> SimulatedStack:
    """Simulate `n_frames` LR frames of the HR image (cropped by `margin` HR px on each side)."""
    hr_with_margin = hr_with_margin.astype(np.float64)
    height, width = hr_with_margin.shape
    h, w = (height - 2 * margin) // SCALE, (width - 2 * margin) // SCALE
    spectrum = np.fft.fft2(hr_with_margin)
    level = float(hr_with_margin.mean())
    frames, masks, shifts, sigmas = [], [], [], []
    for _ in range(n_frames):
        shift = rng.uniform(-conditions.max_shift_lr, conditions.max_shift_lr, size=2)
        sigma = rng.uniform(*conditions.psf_sigma, size=2)
        blurred = np.fft.ifft2(spectrum * transfer_function(
            (height, width), tuple(sigma), rng.uniform(0, np.pi), tuple(shift * SCALE))).real
        lr = blurred[margin + 1:margin + SCALE * h:SCALE, margin + 1:margin + SCALE * w:SCALE]
        lr = lr * rng.uniform(*conditions.gain) + rng.normal(0, conditions.offset_fraction) * level
        lr = lr + rng.normal(0, rng.uniform(*conditions.noise_fraction) * level, size=lr.shape)
        clouds = np.zeros(lr.shape, bool)
        if rng.random() < conditions.full_cloud_probability:
            clouds[:] = True
        elif rng.random() < conditions.cloud_probability:
            clouds = cloud_mask(lr.shape, rng.uniform(*conditions.cloud_cover), rng)
        lr = np.where(clouds, level * rng.uniform(2.5, 5.0) + 0.1 * level * rng.standard_normal(lr.shape), lr)
        frames.append(lr)
        masks.append(~clouds)
        shifts.append(shift)
        sigmas.append(sigma)
    hr = hr_with_margin[margin:margin + SCALE * h, margin:margin + SCALE * w]
    return SimulatedStack(np.asarray(frames, np.float32), np.asarray(masks), np.asarray(shifts),
                          np.asarray(sigmas), hr.astype(np.float32))
