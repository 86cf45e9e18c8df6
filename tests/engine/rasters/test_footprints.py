"""Frames on one pixel grid with different footprints (Landsat scenes of one path and row: the
same 30 m grid, each scene's own extent): read as they are, whole pixels off the first frame,
without --align and without resampling; outside a frame's footprint nothing is clear."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal

from misr_engine.errors import MisrError
from misr_engine.pipeline import SuperResolveRequest, super_resolve_files
from misr_engine.rasters.bands import read_band
from misr_engine.rasters.grid import Grid
from misr_engine.rasters.stack import plan_stack

GRID = Grid("", (1000.0, 30.0, 0.0, 5000.0, 0.0, -30.0), 100, 80)


def test_a_footprint_on_the_same_pixel_grid_is_whole_pixels_off():
    other = Grid("", (1060.0, 30.0, 0.0, 4970.0, 0.0, -30.0), 90, 90)
    assert GRID.offset_of(other) == (2, 1)
    assert GRID.covered_by(other, (2, 1)) == pytest.approx(90 * 79 / (100 * 80))  # columns 2-91, rows 1-79
    assert GRID.offset_of(Grid("", (1075.0, 30.0, 0.0, 4970.0, 0.0, -30.0), 90, 90)) is None  # half a pixel
    assert GRID.offset_of(Grid("", (1060.0, 20.0, 0.0, 4970.0, 0.0, -20.0), 90, 90)) is None  # other pixels
    assert GRID.covered_by(other, (100, 0)) == 0


def _footprint(source: str, target: str, col: int, row: int, size: int) -> str:
    """`size` x `size` pixels of `source` from (col, row): another footprint on its pixel grid."""
    gdal.Translate(target, source, srcWin=[col, row, size, size])
    return target


def _on_grid(source: str, target: str, like: str, fill: float) -> str:
    """`source` padded and cut to the grid of `like` by whole pixels, `fill` outside (nodata)."""
    grid = gdal.Open(like)
    x0, dx, _, y0, _, dy = grid.GetGeoTransform()
    bounds = [x0, y0, x0 + dx * grid.RasterXSize, y0 + dy * grid.RasterYSize]
    gdal.Translate(target, source, projWin=bounds, noData=fill)
    return target


def test_frames_with_their_own_footprints_run_as_if_put_on_the_first_frame_s_grid(tmp_path, sample_paths):
    frames, masks = sample_paths
    cut = [(_footprint(f, str(tmp_path / f"f{i}.tif"), 2 * i, i, 120),
            _footprint(m, str(tmp_path / f"m{i}.tif"), 2 * i, i, 120))
           for i, (f, m) in enumerate(zip(frames[:6], masks[:6]))]
    plan = plan_stack([f for f, _ in cut], [m for _, m in cut])
    assert plan.notes[0].endswith("f1.tif: starts 2 columns right of and 1 row below the first pixel of " + cut[0][0]
                                  + ", on its pixel grid (another footprint): read as it is, not resampled; it covers 97.5% of the grid, the rest "
                                  "counts as no data")
    assert len(plan.notes) == 5 and not plan.warnings  # the masks move with their frames; no --align
    in_area = plan_stack([f for f, _ in cut], extent=(437000.0, 4163000.0, 437900.0, 4163900.0)).notes
    assert in_area[-1].endswith("f5.tif: starts 10 columns right of and 5 rows below the first pixel of " + cut[0][0]
                                + ", on its pixel grid (another footprint): read as it is, not resampled; it covers 73.8% of the area, the rest "
                                "counts as no data")  # the offset from the first frame, the share of the area read
    shifted = super_resolve_files(SuperResolveRequest(
        frames=[f for f, _ in cut], masks=[m for _, m in cut], output=str(tmp_path / "shifted.tif")))
    first = cut[0][0]  # the same frames put on the first frame's grid beforehand (no data outside)
    padded = [(_on_grid(f, str(tmp_path / f"pf{i}.tif"), first, 0), _on_grid(m, str(tmp_path / f"pm{i}.tif"), first, 0))
              for i, (f, m) in enumerate(cut)]
    put = super_resolve_files(SuperResolveRequest(
        frames=[f for f, _ in padded], masks=[m for _, m in padded], output=str(tmp_path / "put.tif")))
    a, b = read_band(shifted.output)[0], read_band(put.output)[0]
    assert np.array_equal(np.isnan(a), np.isnan(b)) and np.nanmax(np.abs(a - b)) == 0


def test_a_coarser_mask_moves_with_its_frame(tmp_path, sample_paths):
    """A 60 m mask beside a 30 m frame of its own footprint: read onto the frame by nearest
    neighbour, then moved with it (it does not cover the first frame: it need not)."""
    frames, masks = sample_paths
    first = _footprint(frames[0], str(tmp_path / "a.tif"), 0, 0, 60)
    other = _footprint(frames[1], str(tmp_path / "b.tif"), 4, 2, 60)
    coarse = str(tmp_path / "b_mask_60m.tif")
    gdal.Translate(coarse, _footprint(masks[1], str(tmp_path / "bm.tif"), 4, 2, 60), xRes=60, yRes=60,
                   resampleAlg="near")
    plan = plan_stack([first, other], [_footprint(masks[0], str(tmp_path / "am.tif"), 0, 0, 60), coarse])
    assert plan.warp == [("", False), ("near", True)] and not plan.warnings
    assert any(note.endswith("b_mask_60m.tif: pixels 2x larger than the frame's, read onto the frame's grid by "
                             "nearest neighbour") for note in plan.notes)
    clear = plan.open(1).mask.read_clear(0, 60)  # on the first frame's grid: b starts 4 columns, 2 rows in
    coarse_clear = np.kron(read_band(coarse)[0] > 0, np.ones((2, 2), bool))
    assert np.array_equal(clear[2:, 4:], coarse_clear[:58, :56]) and not clear[:2].any() and not clear[:, :4].any()


def test_a_footprint_beside_the_first_frame_or_off_its_pixels_is_one_line(tmp_path, sample_paths):
    frames, _ = sample_paths
    first = _footprint(frames[0], str(tmp_path / "a.tif"), 0, 0, 40)
    beside = _footprint(frames[1], str(tmp_path / "b.tif"), 60, 0, 40)
    with pytest.raises(MisrError, match=r"^.*b\.tif: does not overlap .*a\.tif \(it starts 60 columns "
                                        r"right of the first pixel of .*a\.tif, on its pixel grid\)$"):
        plan_stack([first, beside, first])
    half = str(tmp_path / "half.tif")
    gdal.Translate(half, frames[1], srcWin=[0, 0, 40, 40])
    dataset = gdal.Open(half, gdal.GA_Update)
    x0, dx, rx, y0, ry, dy = dataset.GetGeoTransform()
    dataset.SetGeoTransform((x0 + dx / 2, dx, rx, y0, ry, dy))
    del dataset
    with pytest.raises(MisrError, match=r"half\.tif: not on the grid of .*a\.tif .*pass --align"):
        plan_stack([first, half])
