"""`--extent`: super-resolve only an area of the frames (a Sentinel-2 tile is 10,980 px square;
an analyst wants a field, a town): the area's pixels, snapped outward to whole pixels of the first
frame, read with some context around them, written on their own grid."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal

from misr_engine.errors import MisrError
from misr_engine.pipeline import SuperResolveRequest, super_resolve_files
from misr_engine.rasters.bands import read_band
from misr_engine.rasters.grid import Grid, window_of
from misr_engine.rasters.stack import EXTENT_CONTEXT, plan_stack

GRID = Grid("", (1000.0, 30.0, 0.0, 5000.0, 0.0, -30.0), 100, 80)
"""100 x 80 pixels of 30 m, north-up: x 1000-4000, y 2600-5000."""


def test_an_extent_takes_every_pixel_it_touches_and_no_more():
    window = window_of(GRID, (1040.0, 4100.0, 1300.0, 4500.0))
    assert (window.col0, window.width, window.row0, window.height) == (1, 9, 16, 14)  # x 1030-1300, y 4100-4520
    assert window.grid.geotransform == (1030.0, 30.0, 0.0, 4520.0, 0.0, -30.0)
    on_edges = window_of(GRID, (1030.0, 4100.0, 1300.0, 4520.0))  # on pixel edges: no pixel beyond them
    assert (on_edges.col0, on_edges.width, on_edges.row0, on_edges.height) == (1, 9, 16, 14)
    cut = window_of(GRID, (0.0, 4990.0, 1010.0, 9000.0))  # beyond the grid: cut to it
    assert (cut.col0, cut.width, cut.row0, cut.height) == (0, 1, 0, 1)
    assert window_of(GRID, (5000.0, 0.0, 6000.0, 100.0)) is None
    read = window.expanded(16)
    assert (read.col0, read.width, read.row0, read.height) == (0, 26, 0, 46)  # cut at the grid's edges
    assert window.within(read) == (slice(16, 30), slice(1, 10))


def test_an_area_of_the_sample_is_the_whole_run_s_sr_there(tmp_path, sample_paths):
    frames, masks = sample_paths
    whole = super_resolve_files(SuperResolveRequest(frames=frames, masks=masks, output=str(tmp_path / "whole.tif")))
    area = super_resolve_files(SuperResolveRequest(frames=frames, masks=masks, output=str(tmp_path / "area.tif"),
                                                   uncertainty=str(tmp_path / "unc.tif"),
                                                   extent=(437200.0, 4162000.0, 438000.0, 4163000.0)))
    for path in (area.output, area.uncertainty):  # the 30 m pixels the area touches, x3 finer
        written = gdal.Open(path)
        assert written.GetGeoTransform() == (437180.0, 10.0, 0.0, 4163020.0, 0.0, -10.0)
        assert (written.RasterXSize, written.RasterYSize) == (3 * 28, 3 * 34)
    full, grid, _ = read_band(whole.output)
    sr = read_band(area.output)[0]
    col, row = round((437180.0 - grid.geotransform[0]) / 10), round((4163020.0 - grid.geotransform[3]) / -10)
    there = full[row:row + sr.shape[0], col:col + sr.shape[1]]
    # with EXTENT_CONTEXT px around it 12 DN apart on average (level 1,683); without, 40 DN: the area's
    # edges saw no neighbours. The rest: the registration and the units measured on the area.
    assert np.abs(sr - there).mean() < 0.012 * there.mean()
    assert EXTENT_CONTEXT >= 16


def test_an_extent_beside_the_frames_is_one_line_naming_the_first_frame(tmp_path, sample_paths):
    frames, _ = sample_paths
    with pytest.raises(MisrError, match=r"frame_01\.tif: --extent 0 0 10 10 does not overlap the frame "
                                        r"\(436850 4160140 441050 4164340, in its CRS\)"):
        plan_stack(frames, extent=(0.0, 0.0, 10.0, 10.0))
    request = SuperResolveRequest(frames=frames, output=str(tmp_path / "sr.tif"), extent=(10.0, 0.0, 0.0, 10.0))
    with pytest.raises(MisrError, match="XMIN < XMAX"):
        super_resolve_files(request)
    assert not list(tmp_path.iterdir())
