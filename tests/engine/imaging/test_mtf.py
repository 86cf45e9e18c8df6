"""A sensor's MTF at Nyquist and the Gaussian PSF of the engine's forward model (``imaging.mtf``):
the conversion agrees with the simulator that makes the training and evaluation frames."""

from __future__ import annotations

import numpy as np
import pytest
from misr_engine import SCALE
from misr_engine.datasets.simulate import transfer_function
from misr_engine.imaging.mtf import (
    DETECTOR_MTF,
    ENGINE_MTF,
    ENGINE_PSF_SIGMA,
    MTF_RANGE,
    mtf_at_nyquist,
    psf_sigma_from_mtf,
)


@pytest.mark.parametrize("sigma", [0.6, 1.2, 2.0, 2.6])
def test_the_mtf_is_the_simulators_transfer_at_the_input_nyquist(sigma):
    """The simulator's PSF x pixel box, read off its Fourier grid at 0.5 cycles per LR pixel."""
    side = 2 * SCALE * 8  # HR pixels: the LR Nyquist frequency falls on a Fourier bin
    transfer = transfer_function((side, side), (sigma, sigma), 0.0, (0.0, 0.0)).real
    nyquist_bin = side // (2 * SCALE)
    assert mtf_at_nyquist(sigma) == pytest.approx(transfer[0, nyquist_bin], rel=1e-9)
    assert psf_sigma_from_mtf(transfer[0, nyquist_bin]) == pytest.approx(sigma, rel=1e-9)


def test_the_engines_own_psf_and_the_detector_bound():
    assert ENGINE_MTF == pytest.approx(0.289, abs=1e-3)  # the figure --help and the docs quote (0.29)
    assert psf_sigma_from_mtf(ENGINE_MTF) == pytest.approx(ENGINE_PSF_SIGMA)
    assert DETECTOR_MTF == pytest.approx(2 / np.pi)
    assert MTF_RANGE[1] < DETECTOR_MTF


@pytest.mark.parametrize("mtf", [0.0, 0.005, 0.64, 1.0])
def test_mtfs_outside_the_range_are_refused(mtf):
    with pytest.raises(ValueError, match="outside"):
        psf_sigma_from_mtf(mtf)
