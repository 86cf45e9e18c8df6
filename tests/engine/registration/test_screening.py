"""Automatic cloud and shadow screening (registration/screening.py) on the sample scene, whose
frames have real-shaped clouds and whose masks are the truth; shadows are added by darkening
the ground beside each cloud."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from scipy import ndimage

from misr_engine.pipeline import SCREENING_POOL, SuperResolveRequest, _opened, super_resolve_files
from misr_engine.rasters.bands import read_band
from misr_engine.imaging.morphology import disc
from misr_engine.rasters.stack import open_stack, plan_stack
from misr_engine.registration.screening import Screening, ScreenedStack, screen_stack
from tests.engine.reporting import Recorder
from tests.rasters import make_raster


@pytest.fixture(scope="module")
def truth(sample_paths) -> dict[str, np.ndarray]:
    """Clear pixels of every sample frame, from its mask."""
    return {frame: read_band(mask)[0] > 0 for frame, mask in zip(*sample_paths)}


@pytest.fixture(scope="module")
def screened(sample_paths) -> ScreenedStack:
    return screen_stack(open_stack(sample_paths[0]))


def test_screening_finds_the_samples_clouds_and_keeps_its_clear_pixels(screened, truth):
    clear = np.stack([truth[path] for path in screened.paths])
    found = screened.load().masks
    missed = (found & ~clear).sum() / (~clear).sum()
    kept = (found & clear).sum() / clear.sum()
    assert missed < 0.015  # measured 0.41 % (clouds as bright as the ground under them)
    assert kept > 0.9  # measured 94.8 %: the rest is mostly the ring of cloud edges grown around every cloud


def test_the_ground_beside_a_cloud_is_kept(screened, truth):
    """Screened areas grow by the dilation to catch a cloud's faint edges and the shadow beside it,
    bright ones only through pixels that depart from the other dates: the clear ground within
    2 px of the sample's clouds (by their masks) was screened out whole (1.3 % kept), 33 % now."""
    clear = np.stack([truth[path] for path in screened.paths])
    found = screened.load().masks
    beside = np.stack([ndimage.binary_dilation(~c, disc(2)) & c for c in clear])
    assert (found & beside).sum() / beside.sum() > 0.25


def test_the_frames_edges_are_screened_as_well_as_their_inside(sample_paths, truth):
    """At a raster's edge the frames moved by the registration lack pixels: the temporal statistics
    there used to see only the others (two cloudy dates of three at the sample's right edge), and a
    frame's own edge pixels moved off the grid were never screened. Five frames, two of them half
    cloudy: cloud let through on the outer pixels 7.6 % before, 0.14 % now (inside: 0.006 %)."""
    stack = screen_stack(open_stack(sample_paths[0][:5]))
    found = stack.load().masks
    clear = np.stack([truth[path] for path in stack.paths])
    ring = np.ones(clear.shape[1:], bool)
    ring[1:-1, 1:-1] = False
    assert (found[:, ring] & ~clear[:, ring]).mean() < 0.005
    assert (found[:, ~ring] & ~clear[:, ~ring]).mean() < 0.005


def test_the_overcast_date_is_screened_out_and_dropped_with_a_warning(screened, sample_paths):
    assert sample_paths[0][5] not in screened.paths and len(screened.paths) == 8
    assert any("frame_06.tif" in w and "screened out as cloud or shadow" in w for w in screened.warnings)


def test_shadows_beside_the_clouds_are_screened_out(tmp_path, sample_paths, truth):
    frames, shadows = [], []
    dataset = gdal.Open(sample_paths[0][0])
    for index, path in enumerate(sample_paths[0]):
        clear = truth[path]
        shadow = np.roll(~clear, (9, 12), axis=(0, 1)) & clear if 0 < clear.mean() < 1 else np.zeros_like(clear)
        values = np.where(shadow, read_band(path)[0] * 0.5, read_band(path)[0])
        frames.append(str(make_raster(tmp_path / f"frame_{index:02d}.tif", np.round(values).astype(np.uint16),
                                      geotransform=dataset.GetGeoTransform(), wkt=dataset.GetProjection())))
        shadows.append(shadow)
    stack = screen_stack(open_stack(frames))
    found = stack.load().masks
    shadow = np.stack([shadows[frames.index(path)] for path in stack.paths])
    assert (shadow & ~found).sum() / shadow.sum() > 0.65  # measured 69 % (shallow ones on dark water stay)


def test_screened_windows_read_the_same_as_the_whole_raster(screened):
    whole = screened.load().masks
    rows = np.concatenate([screened.read_rows(r, min(140, r + 17))[1] for r in range(0, 140, 17)], axis=1)
    np.testing.assert_array_equal(rows, whole)
    columns = np.concatenate([screened.read_rows(30, 90, c, min(140, c + 13))[1] for c in range(0, 140, 13)], axis=2)
    np.testing.assert_array_equal(columns, whole[:, 30:90])


def test_windows_three_pixels_thin_read_the_same_as_the_whole_raster(screened):
    """Whatever the moves: a window's context is twice the spread's radius plus the dilation (a
    dark pixel's spread is smoothed over pixels whose bright test was smoothed in turn); with one
    radius, 9 pixels of the sample differed with these moves."""
    moves = np.array([[2, -1], [-1, 1], [0, 0], [1, 2], [-2, 0], [0, -2], [3, 1], [-1, -1], [0, 1]])
    moved = ScreenedStack(screened.inner, moves[:len(screened.moves)], screened.screening)
    whole = moved.load().masks
    rows = np.concatenate([moved.read_rows(r, min(140, r + 3))[1] for r in range(0, 140, 3)], axis=1)
    columns = np.concatenate([moved.read_rows(0, 140, c, min(140, c + 3))[1] for c in range(0, 140, 3)], axis=2)
    np.testing.assert_array_equal(rows, whole)
    np.testing.assert_array_equal(columns, whole)


def test_a_window_reads_only_the_rows_and_columns_it_needs(screened):
    """Streaming: a window reads its pixels, the registration moves and the halo, no more (the
    registration's window, 512 px wide, was screened over the raster's full width: about 1 GB
    for 8 frames 6,000 px wide)."""
    read: list[tuple[int, int, int, int]] = []
    evidence = screened.evidence

    class Recording:
        shape, grid = evidence.shape, evidence.grid

        def read_rows(self, row0, row1, col0=0, col1=None):
            read.append((row0, row1, col0, evidence.grid.width if col1 is None else col1))
            return evidence.read_rows(row0, row1, col0, col1)
    ScreenedStack(screened.inner, screened.moves, screened.screening, Recording()).read_rows(60, 70, 50, 65)
    reach = np.ptp(screened.moves, axis=0) + Screening().halo
    assert len(read) == 1
    (row0, row1, col0, col1), = read
    assert 60 - reach[0] <= row0 and row1 <= 70 + reach[0] and 50 - reach[1] <= col0 and col1 <= 65 + reach[1]


def test_without_masks_a_run_uses_the_frames_clearest_once_screened(tmp_path, sample_paths, truth):
    """More frames than --max-frames and no masks: every frame looks clear until screened, so all are
    screened and the clearest kept (before: the first five given, two of them half cloudy)."""
    frames = sample_paths[0]
    clearest = sorted(sorted(frames, key=lambda path: -truth[path].mean())[:5])
    request = SuperResolveRequest(frames=frames, output=str(tmp_path / "sr.tif"), max_frames=5)
    recorder = Recorder()
    result = super_resolve_files(request, recorder)
    assert result.frames == clearest  # frames 3, 4, 5, 8 and 9: 92-100% clear
    assert "screening 9 usable frames for clouds to keep the 5 clearest" in recorder.notes[0]  # before it runs
    assert len(read_band(result.output)[0]) == 3 * 140
    dropped = [message for message in result.warnings if "beyond the 5 clearest once screened" in message]
    assert len(dropped) == 1 and all(os.path.basename(path) in dropped[0]
                                     for path in frames if path not in clearest and "frame_06" not in path)


def test_without_masks_at_most_twice_max_frames_are_screened(tmp_path, sample_paths, truth):
    """An archive is not screened whole (memory): the SCREENING_POOL x --max-frames frames with the
    most valid pixels are, and the clearest of them once screened are used."""
    frames = sample_paths[0]
    request = SuperResolveRequest(frames=frames, output=str(tmp_path / "sr.tif"), max_frames=2)
    plan = plan_stack(request.frames)
    stack, spares, _ = _opened(plan, request)
    assert SCREENING_POOL == 2 and spares == len(frames) - 2
    pool = frames[:4]  # every frame fully valid: the first four given
    assert stack.paths == sorted(sorted(pool, key=lambda path: -truth[path].mean())[:2])  # frames 3 and 4
    assert any(message.startswith("5 frame(s) beyond the 4 clearest not used") for message in stack.warnings)
