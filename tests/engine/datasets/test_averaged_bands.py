"""Coarser bands from the 10 m ones (``datasets.sentinel2.averaged_copy``): the validation
stand-in for the unseen 20 m bands averages the real 10 m pixels, block by block."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from misr_engine.datasets.sentinel2 import averaged_copy
from misr_engine.errors import MisrError
from misr_engine.rasters.bands import read_band

from tests.rasters import HOLDOUT_HR


def test_each_20m_pixel_is_the_mean_of_the_four_10m_pixels_it_covers(tmp_path):
    fine = read_band(str(HOLDOUT_HR))[0].astype(np.float64)
    path = averaged_copy(str(HOLDOUT_HR), 20.0, tmp_path)
    coarse, grid, _ = read_band(path)
    height, width = fine.shape[0] // 2, fine.shape[1] // 2
    assert coarse.shape == (height, width)
    blocks = fine[:2 * height, :2 * width].reshape(height, 2, width, 2).mean(axis=(1, 3))
    assert np.abs(coarse - blocks).max() <= 0.5  # the band's integers, rounded
    assert grid.geotransform[1] == 20.0 and grid.geotransform[5] == -20.0


def test_an_unreadable_source_is_named(tmp_path):
    bad = tmp_path / "broken.jp2"
    bad.write_bytes(b"not a raster")
    with pytest.raises(MisrError, match="broken.jp2: could not be averaged"):
        averaged_copy(str(bad), 20.0, tmp_path)


def test_a_source_of_the_same_name_elsewhere_gets_its_own_copy(tmp_path):
    """The copies live in one temporary folder shared by every checkout: a VRT made from another
    checkout's file of the same name must not be reused (it points at that file, which may be
    gone)."""
    first, second = tmp_path / "a" / "band.tif", tmp_path / "b" / "band.tif"
    for path in (first, second):
        path.parent.mkdir()
        shutil.copy(HOLDOUT_HR, path)
    folder = tmp_path / "copies"
    folder.mkdir()
    made = averaged_copy(str(first), 20.0, folder)
    shutil.rmtree(first.parent)  # that checkout is gone
    other = averaged_copy(str(second), 20.0, folder)
    assert other != made
    coarse = read_band(other)[0]  # readable: it points at the file that exists
    assert coarse.shape == tuple(n // 2 for n in read_band(str(second))[0].shape)


def test_a_copy_made_through_a_linked_folder_outlives_the_link(tmp_path):
    """A checkout whose data folder is a link to another's (the studies' worktrees): the copy,
    shared by both, names the file itself, so it still reads once that link is gone."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(HOLDOUT_HR, data / "band.tif")
    link = tmp_path / "worktree_data"
    link.symlink_to(data)
    folder = tmp_path / "copies"
    folder.mkdir()
    made = averaged_copy(str(link / "band.tif"), 20.0, folder)
    link.unlink()
    assert averaged_copy(str(data / "band.tif"), 20.0, folder) == made  # the same file, one copy
    assert read_band(made)[0].shape == tuple(n // 2 for n in read_band(str(data / "band.tif"))[0].shape)
