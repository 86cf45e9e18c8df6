"""Masks as products ship them (rasters/masks.py): SCL, QA_PIXEL, Fmask and binary masks are read
with the documented unusable classes, told apart from their values, read onto the frame's grid
from coarser pixels, and dilated; built around the real clouds of the sample scene."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal

from misr_engine.errors import MisrError
from misr_engine.imaging.morphology import disc
from misr_engine.rasters.masks import MaskOptions, ValueCounts, candidate_kinds, clear_of, resolve_kinds
from misr_engine.rasters.stack import open_stack
from tests.rasters import QA_CLEAR_LAND, QA_CLOUD, make_raster, product_masks


def counts(*values: float) -> ValueCounts:
    found = ValueCounts()
    found.add(np.array(values, np.float32))
    return found


def test_each_kind_treats_the_documented_classes_as_unusable():
    scl = np.arange(12)
    assert np.flatnonzero(~clear_of("scl", scl)).tolist() == [0, 1, 3, 8, 9, 10]
    assert np.flatnonzero(~clear_of("scl", scl, snow=True, dark_areas=True)).tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    fmask = np.array([0, 1, 2, 3, 4, 255])
    assert clear_of("fmask", fmask).tolist() == [True, True, False, True, False, False]
    assert clear_of("fmask", fmask, snow=True).tolist() == [True, True, False, False, False, False]
    words = np.array([QA_CLEAR_LAND, QA_CLOUD, 1, 0, QA_CLEAR_LAND | 1 << 4, QA_CLEAR_LAND | 1 << 2,
                      QA_CLEAR_LAND | 1 << 1, QA_CLEAR_LAND | 1 << 5])
    assert clear_of("qa_pixel", words).tolist() == [True, False, False, False, False, False, False, True]
    assert not clear_of("qa_pixel", words, snow=True)[-1]
    assert clear_of("binary", np.array([0, 1, 255, np.nan])).tolist() == [False, True, True, False]


@pytest.mark.parametrize("values, expected", [
    ((0, 1), ["binary"]), ((0, 255), ["binary", "fmask"]), ((0.0, 0.4, 1.0), ["binary"]),
    ((4, 5, 6, 8, 9), ["scl"]), ((0, 1, 2, 4, 255), ["fmask"]),
    ((1, QA_CLEAR_LAND, QA_CLOUD), ["qa_pixel"]), ((3, 4), ["scl", "fmask"]),
])
def test_kinds_are_told_apart_by_their_values(values, expected):
    assert candidate_kinds(counts(*values)) == expected


def test_a_mask_mostly_of_zeros_and_ones_among_scl_and_fmask_codes_is_taken_for_fmask():
    mostly_clear_land = ValueCounts()
    mostly_clear_land.add(np.array([0] * 90 + [1] * 5 + [4] * 5, np.float32))
    assert candidate_kinds(mostly_clear_land)[0] == "fmask"


def test_an_ambiguous_mask_takes_the_kind_of_the_others_with_a_note():
    kinds, notes = resolve_kinds(["a.tif", "b.tif"], ["auto", "auto"], [counts(4, 5, 9), counts(0, 4)])
    assert kinds == ["scl", "scl"]
    assert any("b.tif" in note and "other masks" in note and "--mask-kind" in note for note in notes)


def test_a_kind_the_values_cannot_hold_is_a_one_line_error_naming_the_mask():
    with pytest.raises(MisrError, match=r"a\.tif: values do not fit --mask-kind qa_pixel"):
        resolve_kinds(["a.tif"], ["qa_pixel"], [counts(4, 5, 9)])


@pytest.mark.parametrize("kind", ["scl", "qa_pixel", "fmask"])
def test_product_masks_around_the_samples_clouds_are_detected_and_read_as_their_clear_pixels(
        tmp_path, sample_paths, kind):
    masks, clear = product_masks(tmp_path, kind)
    stack = open_stack(sample_paths[0], masks)
    keep = [sample_paths[0].index(path) for path in stack.paths]
    assert len(keep) == 8  # the overcast frame 06 is dropped
    np.testing.assert_array_equal(stack.load().masks, clear[keep])
    assert any(f"mask kind {kind} (detected from the values)" in note for note in stack.notes)


def test_a_20m_scl_beside_10m_bands_is_read_by_nearest_neighbour_with_a_note(tmp_path, sample_paths):
    masks, clear = product_masks(tmp_path, "scl", factor=2)
    stack = open_stack(sample_paths[0], masks)
    keep = [sample_paths[0].index(path) for path in stack.paths]
    np.testing.assert_array_equal(stack.load().masks, clear[keep])
    assert any("pixels 2x larger than the frame's" in note and "nearest neighbour" in note for note in stack.notes)


def test_a_coarse_mask_not_covering_its_frame_is_refused(tmp_path, sample_paths):
    frames = sample_paths[0][:2]
    dataset = gdal.Open(frames[0])
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    short = make_raster(tmp_path / "short.tif", np.full((60, 70), 4, np.uint8), gdal.GDT_Byte,
                        geotransform=(x0, 2 * dx, 0.0, y0, 0.0, 2 * dy), wkt=dataset.GetProjection())
    with pytest.raises(MisrError, match="short.tif: mask not on the grid of its frame.*--align"):
        open_stack(frames, [str(short), str(short)])


def test_snow_and_dark_areas_are_unusable_only_when_asked(tmp_path, sample_paths):
    frames = sample_paths[0][2:4]
    codes = np.full((140, 140), 4, np.uint8)
    codes[:70] = 11
    codes[70:, :70] = 2
    masks = [str(make_raster(tmp_path / f"scl{i}.tif", codes, gdal.GDT_Byte,
                             geotransform=gdal.Open(frames[0]).GetGeoTransform(),
                             wkt=gdal.Open(frames[0]).GetProjection())) for i in range(2)]
    assert open_stack(frames, masks).clear_fraction.tolist() == [1.0, 1.0]
    assert open_stack(frames, masks, mask_options=MaskOptions(snow=True)).clear_fraction.tolist() == [0.5, 0.5]
    assert open_stack(frames, masks, mask_options=MaskOptions(("scl",), snow=True, dark_areas=True)
                      ).clear_fraction.tolist() == [0.25, 0.25]


def test_dilation_grows_the_unusable_area_by_a_disc_and_reads_the_same_window_by_window(sample_paths):
    frames, masks = sample_paths
    plain = open_stack(frames, masks).load().masks
    options = MaskOptions(dilation=2)
    stack = open_stack(frames, masks, mask_options=options)
    grown = stack.load().masks
    from scipy import ndimage
    expected = np.stack([~ndimage.binary_dilation(~m, structure=disc(2)) for m in plain])
    np.testing.assert_array_equal(grown, expected)
    windows = np.concatenate([stack.read_rows(r, min(140, r + 13), 7, 121)[1] for r in range(0, 140, 13)], axis=1)
    np.testing.assert_array_equal(windows, grown[:, :, 7:121])
