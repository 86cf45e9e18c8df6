"""Wiener deconvolution of a Gaussian blur: the classical pipeline's last step, and the
initialisation of the learned deconvolution in PIUnet."""

from __future__ import annotations

import numpy as np
from skimage.restoration import wiener

from .resample import gaussian_blur

WIENER_SIGMA = 1.5
"""Gaussian blur (HR px) deconvolved by `registered_mean_wiener`: the whole blur of
`registered_mean` (sensor PSF, 3x3 area integration, bicubic kernel), not the sensor PSF
alone. Best on simulated Sentinel-2 stacks: 1.5 with a sensor PSF of sigma 1.0, 1.6 with
`simulate.Degradation()` (sigmas 0.7-1.8); 1.5 loses 0.1 dB there."""
WIENER_BALANCE = 0.005
"""Regularisation weight of the Wiener filter (skimage's `balance`)."""


def wiener_deconvolve(image: np.ndarray, psf_sigma: float = WIENER_SIGMA,
                      balance: float = WIENER_BALANCE) -> np.ndarray:
    """Wiener-Hunt deconvolution of a Gaussian blur (skimage, Laplacian regulariser).

    The image is padded symmetrically so the circular FFT sees no border jump; NaN pixels
    are filled with the mean for the filter and stay NaN.
    """
    valid = np.isfinite(image)
    if not valid.any():
        return np.array(image, np.float32)
    pad = int(np.ceil(4 * psf_sigma)) + 2
    padded = np.pad(np.where(valid, image, image[valid].mean()), pad, mode="symmetric")
    radius = int(np.ceil(4 * psf_sigma))
    kernel = np.zeros((2 * radius + 1,) * 2)
    kernel[radius, radius] = 1.0
    kernel = gaussian_blur(kernel, psf_sigma)
    restored = wiener(padded.astype(np.float64), kernel / kernel.sum(), balance, clip=False)
    return np.where(valid, restored[pad:-pad, pad:-pad], np.nan).astype(np.float32)


def wiener_kernel(size: int) -> np.ndarray:
    """The classical pipeline's Wiener deconvolution (``wiener_deconvolve``) as a
    `size` x `size` convolution kernel: its impulse response, Hann-windowed, summing to 1."""
    centre = 4 * size
    impulse = np.zeros((2 * centre + 1,) * 2, np.float32)
    impulse[centre, centre] = 1.0
    radius = size // 2
    response = wiener_deconvolve(impulse)[centre - radius:centre + radius + 1, centre - radius:centre + radius + 1]
    taper = np.hanning(size + 2)[1:-1]
    kernel = response * np.outer(taper, taper)
    return (kernel / kernel.sum()).astype(np.float32)
