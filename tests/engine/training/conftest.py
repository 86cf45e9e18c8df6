"""Fixtures of the training tests: a tiny training and validation set from the real held-out crop."""

from __future__ import annotations

import pytest

from tests.rasters import HOLDOUT_HR


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """(train.npz, val.npz): 24 and 4 registered samples of 6 frames, 16 x 16 LR."""
    from misr_engine.datasets.samples import build_samples, save_samples
    folder = tmp_path_factory.mktemp("dataset")
    train_path, val_path = folder / "train.npz", folder / "val.npz"
    window = ((0, None), (0, None))
    save_samples(train_path, build_samples([str(HOLDOUT_HR)], window, 24, 16, 6, seed=1, workers=1))
    save_samples(val_path, build_samples([str(HOLDOUT_HR)], window, 4, 16, 6, seed=2, workers=1))
    return train_path, val_path
