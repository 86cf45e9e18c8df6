"""Shared fixtures: the embedded real sample scene, the shipped model, and a held-out stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "sample"
HOLDOUT_HR = ROOT / "tests" / "data" / "s2_holdout_hr.tif"


@pytest.fixture(scope="session")
def sample_paths() -> tuple[list[str], list[str]]:
    frames = sorted(str(p) for p in SAMPLE.glob("frame_*.tif"))
    masks = sorted(str(p) for p in SAMPLE.glob("mask_*.tif"))
    assert len(frames) == len(masks) == 9
    return frames, masks


@pytest.fixture(scope="session")
def sample_stack(sample_paths):
    from misr_engine.raster_io import read_stack
    return read_stack(*sample_paths)


@pytest.fixture(scope="session")
def shipped_model():
    from misr_engine.weights import load_model
    return load_model("piunet").model


@pytest.fixture(scope="session")
def holdout_stack():
    """A 9-frame stack simulated (fixed seed) from a real held-out Sentinel-2 crop, and its HR."""
    from misr_engine.raster_io import read_band
    from misr_engine.simulate import degrade
    hr = read_band(str(HOLDOUT_HR))[0]
    return degrade(hr, 9, np.random.default_rng(7))
