"""Declared units (GDAL band scale and offset, as Sentinel-2 L2A and Landsat Collection 2 products
carry them): every frame is read in the first declared units and both outputs declare them; on
crops of the sample scene's real frames and masks."""

from __future__ import annotations

import numpy as np
import pytest
from misr_engine.inference.engine import open_engine
from misr_engine.pipeline import SuperResolveRequest, super_resolve_files
from misr_engine.rasters.bands import Units, open_band
from misr_engine.rasters.stack import open_stack
from osgeo import gdal

from tests.engine.reporting import Recorder

CROP = [30, 30, 48, 48]  # x, y, width, height in the sample's LR pixels
OLD_BASELINE = Units(0.0001, 0.0)  # Sentinel-2 L2A before processing baseline 04.00
NEW_BASELINE = Units(0.0001, -0.1)  # from 04.00 on: the same reflectance is 1000 numbers higher


@pytest.fixture(scope="module")
def engine():
    return open_engine("torch", "piunet", None, "cpu", "fp32")


def crops(folder, sample_paths, units: list[Units | None]) -> tuple[list[str], list[str]]:
    """The sample's frames cropped, frame i declaring units[i] (None: nothing), its numbers those
    that give the sample's values as reflectance / 0.0001 in the old baseline's units."""
    folder.mkdir(exist_ok=True)
    frames, masks = [], []
    for index, (frame, mask) in enumerate(zip(*sample_paths)):
        frames.append(str(folder / f"frame_{index + 1:02d}.tif"))
        masks.append(str(folder / f"mask_{index + 1:02d}.tif"))
        gdal.Translate(masks[-1], mask, srcWin=CROP)
        dataset = gdal.Translate(frames[-1], frame, srcWin=CROP)
        declared = units[index]
        if declared is not None:
            band = dataset.GetRasterBand(1)
            a, b = OLD_BASELINE.to(declared)
            band.WriteArray(np.round(band.ReadAsArray() * a + b).astype(np.uint16))
            band.SetScale(declared.scale)
            band.SetOffset(declared.offset)
        dataset = None
    return frames, masks


def run(frames, masks, folder, engine) -> tuple[gdal.Dataset, gdal.Dataset, list[str]]:
    recorder = Recorder()
    request = SuperResolveRequest(frames=frames, masks=masks, output=str(folder / "sr.tif"),
                                  uncertainty=str(folder / "unc.tif"), tile_size=48, overwrite=True)
    result = super_resolve_files(request, recorder, engine=engine)
    return gdal.Open(result.output), gdal.Open(result.uncertainty), recorder.notes


def test_units_are_read_from_the_band_and_convert_between_baselines(tmp_path, sample_paths):
    frames, _ = crops(tmp_path, sample_paths, [NEW_BASELINE] + [None] * 8)
    assert open_band(frames[0]).units == NEW_BASELINE and not open_band(frames[1]).units.declared
    a, b = NEW_BASELINE.to(OLD_BASELINE)
    assert a * 2000 + b == pytest.approx(1000)


def test_the_outputs_declare_the_frames_units_and_the_values_are_those_without_them(tmp_path, sample_paths, engine):
    plain = run(*crops(tmp_path / "plain", sample_paths, [None] * 9), tmp_path / "plain", engine)
    declared = run(*crops(tmp_path / "l2a", sample_paths, [NEW_BASELINE] * 9), tmp_path / "l2a", engine)
    sr, uncertainty = declared[0].GetRasterBand(1), declared[1].GetRasterBand(1)
    assert (sr.GetScale(), sr.GetOffset()) == (NEW_BASELINE.scale, NEW_BASELINE.offset)
    assert (uncertainty.GetScale(), uncertainty.GetOffset()) == (NEW_BASELINE.scale, 0.0)
    assert plain[0].GetRasterBand(1).GetScale() in (None, 1.0) and plain[0].GetRasterBand(1).GetOffset() in (None, 0.0)
    # the same numbers + 1000 in every frame: the SR is the same surface, 1000 numbers higher
    difference = sr.ReadAsArray().astype(np.float64) - plain[0].GetRasterBand(1).ReadAsArray()
    assert np.nanmedian(difference) == pytest.approx(1000, abs=1.0)
    assert not declared[2], declared[2]


def test_frames_of_another_baseline_are_read_in_the_first_frames_units(tmp_path, sample_paths, engine):
    """A time series across Sentinel-2's baseline change: the last five frames' numbers are 1000
    higher and declare the offset; the SR is the one of the series in one baseline."""
    units = [OLD_BASELINE] * 4 + [NEW_BASELINE] * 5
    mixed_frames, mixed_masks = crops(tmp_path / "mixed", sample_paths, units)
    stack = open_stack(mixed_frames, mixed_masks)
    source = stack.sources[stack.paths.index(mixed_frames[6])]
    values, clear = source.read_rows(0, 48)
    raw = gdal.Open(mixed_frames[6]).ReadAsArray().astype(np.float64)
    assert clear.any() and np.array_equal(values[clear], (raw - 1000)[clear])
    mixed = run(mixed_frames, mixed_masks, tmp_path / "mixed", engine)
    same = run(*crops(tmp_path / "same", sample_paths, [OLD_BASELINE] * 9), tmp_path / "same", engine)
    sr = mixed[0].GetRasterBand(1)
    assert (sr.GetScale(), sr.GetOffset()) == (OLD_BASELINE.scale, OLD_BASELINE.offset)
    assert np.nanmax(np.abs(sr.ReadAsArray() - same[0].GetRasterBand(1).ReadAsArray())) < 0.05
    assert any("5 frames" in note and "read in the units of" in note for note in mixed[2]), mixed[2]


def test_a_frame_declaring_nothing_is_read_as_is_with_a_warning(tmp_path, sample_paths):
    """Only declared units are converted: a frame without a scale/offset beside frames with one is
    taken to be in their units (nothing says otherwise), and the run says so."""
    frames, masks = crops(tmp_path, sample_paths, [None] + [NEW_BASELINE] * 8)
    stack = open_stack(frames, masks)
    assert stack.units == (NEW_BASELINE,)
    first = stack.sources[stack.paths.index(frames[0])]
    values, clear = first.read_rows(0, 48)
    raw = gdal.Open(frames[0]).ReadAsArray().astype(np.float64)
    assert np.array_equal(values[clear], raw[clear])
    assert any("frame_01.tif" in w and "declares no scale/offset" in w for w in stack.warnings), stack.warnings
