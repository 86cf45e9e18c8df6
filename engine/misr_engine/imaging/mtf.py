"""A sensor's MTF at Nyquist as the width of the Gaussian PSF in the engine's forward model.

The engine re-observes an SR as a frame sees it: blurred by an isotropic Gaussian of `sigma`
output (HR) pixels, moved to the frame's phase and integrated over each input pixel's
``SCALE`` x ``SCALE`` block (``models.sampling.observe_at_phases``). At the input's Nyquist
frequency, f = 1 / (2 SCALE) cycles per HR pixel, that model transfers

    MTF = exp(-2 pi^2 sigma^2 f^2) * sinc(SCALE f),

of which the square detector alone gives sinc(1/2) = 2/pi = 0.64. A sensor's data-quality
reports give its MTF at Nyquist per band (optics, detector and motion together); a product
resampled to finer pixels than the sensor's has a much lower one at its own Nyquist frequency.
``psf_sigma_from_mtf`` inverts the model for it.
"""

from __future__ import annotations

import math

from .. import SCALE

NYQUIST = 1.0 / (2 * SCALE)
"""Cycles per output pixel at the input's Nyquist frequency."""
DETECTOR_MTF = math.sin(math.pi * SCALE * NYQUIST) / (math.pi * SCALE * NYQUIST)
"""The MTF at Nyquist of the input pixel's square footprint alone (2/pi): the model's highest."""
ENGINE_PSF_SIGMA = 1.2
"""HR px: the Gaussian PSF the engine assumes unless told the sensor's MTF (the network's initial
PSF, ``models.backprojection.PSF_SIGMA``, and the back-projection's): an MTF of 0.29 at Nyquist,
Sentinel-2-like."""
MTF_RANGE = (0.01, 0.63)
"""The MTFs at Nyquist the engine accepts: 0.01 is a Gaussian of 2.75 output pixels (a
blur far wider than any optical sensor's at its own pixel size); 0.63 a near-perfect optic."""


def mtf_at_nyquist(sigma: float) -> float:
    """The forward model's MTF at the input's Nyquist frequency for a Gaussian of `sigma` HR px."""
    return DETECTOR_MTF * math.exp(-2.0 * (math.pi * sigma * NYQUIST) ** 2)


def psf_sigma_from_mtf(mtf: float) -> float:
    """HR px: the Gaussian whose forward model has MTF `mtf` at Nyquist (``mtf_at_nyquist``'s
    inverse); ValueError outside ``MTF_RANGE``."""
    low, high = MTF_RANGE
    if not low <= mtf <= high:
        raise ValueError(f"{mtf:g} is outside {low:g}-{high:g}")
    return math.sqrt(-math.log(mtf / DETECTOR_MTF) / 2.0) / (math.pi * NYQUIST)


ENGINE_MTF = mtf_at_nyquist(ENGINE_PSF_SIGMA)
"""The MTF at Nyquist the engine assumes unless told the sensor's."""
