"""Shared fixtures: the embedded real sample scene, the shipped model, and a held-out stack."""

from __future__ import annotations

import numpy as np
import pytest

from tests.rasters import HOLDOUT_HR


@pytest.fixture(scope="session")
def sample_paths() -> tuple[list[str], list[str]]:
    from misr_engine.resources import sample_paths as shipped_sample
    frames, masks = shipped_sample()
    assert len(frames) == len(masks) == 9
    return frames, masks


@pytest.fixture(scope="session")
def sample_stack(sample_paths):
    from misr_engine.rasters.stack import read_stack
    return read_stack(*sample_paths)


@pytest.fixture(scope="session")
def shipped_model():
    from misr_engine.models.weights import load_model
    return load_model("piunet").model


@pytest.fixture(scope="session")
def holdout_stack():
    """A 9-frame stack simulated (fixed seed) from a real held-out Sentinel-2 crop, and its HR."""
    from misr_engine.rasters.bands import read_band
    from misr_engine.datasets.simulate import SENTINEL2, degrade
    hr = read_band(str(HOLDOUT_HR))[0]
    return degrade(hr, 9, np.random.default_rng(7), SENTINEL2)
