"""Multispectral runs (`--bands`): one registration (and one screening) shared by every band,
each band super-resolved, one multi-band SR and one uncertainty band per band, descriptions
kept; on a time series simulated from real Sentinel-2 B04, B03, B02 (tests/data)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from osgeo import gdal

import misr_engine.inference.tiled as tiled
import misr_engine.registration.streamed as streamed
from misr_engine.errors import MisrError
from misr_engine.inference.engine import open_engine
from misr_engine.inference.normalisation import Normalisation
from misr_engine.pipeline import SuperResolveRequest, super_resolve_files
from misr_engine.rasters.stack import open_stack
from misr_engine.registration.screening import screen_stack
from tests.rasters import simulated_series

TILE = 64


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return simulated_series(tmp_path_factory.mktemp("rgb"), count=6)


@pytest.fixture(scope="module")
def engine():
    return open_engine("torch", "piunet", None, "cpu", "fp32")


class Counting:
    """A runner that counts the tiles it runs."""

    def __init__(self, runner):
        self.runner, self.tiles = runner, 0
        self.default_batch = runner.default_batch

    def __call__(self, frames, masks, phases):
        self.tiles += len(frames)
        return self.runner(frames, masks, phases)


def run(series, folder, engine, **options):
    frames, masks, _ = series
    request = SuperResolveRequest(frames=frames, masks=masks, output=str(folder / "sr.tif"),
                                  uncertainty=str(folder / "unc.tif"), tile_size=TILE, overwrite=True, **options)
    result = super_resolve_files(request, engine=engine)
    return gdal.Open(result.output), gdal.Open(result.uncertainty), result


@pytest.fixture(scope="module")
def rgb_run(series, engine, tmp_path_factory, monkeypatch_module):
    calls = []
    for module in (streamed, tiled):
        original = module.stack_registration
        monkeypatch_module.setattr(module, "stack_registration", lambda stack, o=original: calls.append(1) or o(stack))
    noisy_frames = Normalisation.noisy_frames  # every frame at least as noisy as the median one is named
    monkeypatch_module.setattr(Normalisation, "noisy_frames", lambda norm: noisy_frames(norm, ratio=1.0))
    counting = Counting(engine.runner)
    sr, unc, result = run(series, tmp_path_factory.mktemp("out"), replace(engine, runner=counting), bands=[1, 2, 3])
    return sr, unc, result, len(calls), counting.tiles


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_every_band_is_written_with_its_description_and_its_uncertainty_band(rgb_run):
    sr, unc, result, _, _ = rgb_run
    assert sr.RasterCount == unc.RasterCount == 3
    assert [sr.GetRasterBand(i).GetDescription() for i in (1, 2, 3)] == ["B04", "B03", "B02"]
    assert [unc.GetRasterBand(i).GetDescription() for i in (1, 2, 3)] == [
        f"{name}: uncertainty (Laplace scale)" for name in ("B04", "B03", "B02")]
    assert json.loads(sr.GetMetadata()["MISR_BANDS"]) == [1, 2, 3]
    uncertainty = unc.ReadAsArray()
    assert np.all(np.nanmedian(uncertainty, axis=(1, 2)) > 0)


def test_a_warning_about_one_band_names_the_band(rgb_run):
    """The noisy-frame warnings (here for every frame at least as noisy as the median one) come
    once per band, each prefixed with its band."""
    _, _, result, _, _ = rgb_run
    noisy = [warning for warning in result.warnings if "times as noisy as the median frame" in warning]
    assert {warning.split(":")[0] for warning in noisy} == {"band 1", "band 2", "band 3"}
    assert all(warning.startswith("band ") for warning in noisy)


def test_each_band_is_super_resolved_against_its_own_real_10m_band(rgb_run, series):
    from misr_engine.evaluation.metrics import cpsnr
    from misr_engine.rasters.stack import read_stack
    from misr_engine.evaluation.baselines import bicubic_masked_mean
    sr, _, _, _, _ = rgb_run
    frames, masks, hr = series
    for index in range(3):
        stack = read_stack(frames, masks, band=index + 1)
        scale = float(hr[index].max())
        gain = (cpsnr(sr.GetRasterBand(index + 1).ReadAsArray() / scale, hr[index] / scale)
                - cpsnr(bicubic_masked_mean(stack.frames, stack.masks) / scale, hr[index] / scale))
        assert gain > 1.0, (index, gain)


def test_registration_runs_once_and_the_network_once_per_band(rgb_run, series, engine, tmp_path):
    """Time grows linearly with the band count: one registration, B times the tiles of one band."""
    _, _, _, registrations, tiles = rgb_run
    counting = Counting(engine.runner)
    run(series, tmp_path, replace(engine, runner=counting), band=2)
    assert registrations == 1
    assert tiles == 3 * counting.tiles


def test_the_first_band_equals_a_single_band_run_and_the_others_share_its_registration(rgb_run, series, engine,
                                                                                       tmp_path):
    sr, _, _, _, _ = rgb_run
    single, _, _ = run(series, tmp_path, engine, band=1)
    np.testing.assert_array_equal(sr.GetRasterBand(1).ReadAsArray(), single.GetRasterBand(1).ReadAsArray())


def test_all_bands_is_every_band_of_the_first_frame(series, engine, tmp_path):
    sr, _, _ = run(series, tmp_path, engine, bands="all")
    assert sr.RasterCount == 3


def test_band_and_bands_together_or_a_missing_band_are_one_line_errors(series, engine, tmp_path):
    with pytest.raises(MisrError, match="--band and --bands"):
        run(series, tmp_path, engine, band=1, bands=[1, 2])
    with pytest.raises(MisrError, match="frame_01.tif: --band 4 is out of range"):
        run(series, tmp_path, engine, bands=[1, 4])


def test_every_band_shares_one_screening_of_the_first_band(series):
    frames, _, _ = series
    stack = screen_stack(open_stack(frames, bands=[1, 2, 3]))
    masks = [stack.band(index).read_rows(0, 64)[1] for index in range(3)]
    assert (~masks[0]).any()
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], masks[2])


def test_the_plan_reads_every_band_and_the_budget_and_disk_checks_count_them(series, tmp_path, monkeypatch):
    """Issue 20's up-front checks with --bands: every band of a frame is open (GDAL's cache, open
    files, --align warps) and written (disk space), one frame at a time."""
    import os
    from types import SimpleNamespace

    from misr_engine.rasters.bands import open_band
    from misr_engine.rasters.disk import check_free_space, output_bytes
    from misr_engine.rasters.stack import open_planned, plan_stack

    frames, masks, _ = series
    one, three = plan_stack(frames, masks, band=1), plan_stack(frames, masks, bands=[1, 2, 3])
    per_band = [open_band(frames[0], number).cache_bytes() for number in (2, 3)]
    assert three.band_numbers == [1, 2, 3] and one.band_numbers == [1]
    assert [b - a for a, b in zip(one.cache, three.cache)] == [sum(per_band)] * len(frames)
    stack = open_planned(three)
    assert stack.band_count == 3 and len(stack.sources[0].bands) == 3
    grid = three.grid.refined(3)
    assert output_bytes(grid, 3)[1] == 3 * output_bytes(grid)[1]
    status = os.statvfs(tmp_path)
    free_blocks = 2 * output_bytes(grid)[0] // status.f_frsize + 1  # room for one band of each output
    monkeypatch.setattr("misr_engine.rasters.disk.os.statvfs",
                        lambda folder: SimpleNamespace(f_bavail=free_blocks, f_frsize=status.f_frsize))
    outputs = [str(tmp_path / "sr.tif"), str(tmp_path / "unc.tif")]
    assert check_free_space(outputs, grid, frames[0], bands=1)[0]  # fits compressed (a warning)
    with pytest.raises(MisrError, match=r"not enough disk space.* float32 pixels x 3 bands each"):
        check_free_space(outputs, grid, frames[0], bands=3)


def test_each_band_gets_its_own_sensor_mtf_or_one_for_all(series, engine, tmp_path, monkeypatch):
    """`--sensor-mtf` with `--bands`: one value per band goes to that band's back-projection, one
    value to every band; another count is a one-line error before anything is written."""
    from misr_engine.imaging.mtf import psf_sigma_from_mtf
    seen = []
    original = tiled.super_resolve_strips

    def spy(*args, psf_sigma=None, **kwargs):
        seen.append(psf_sigma)
        return original(*args, psf_sigma=psf_sigma, **kwargs)
    monkeypatch.setattr(tiled, "super_resolve_strips", spy)
    run(series, tmp_path, engine, bands=[2, 1], sensor_mtf=[0.1, 0.4])
    assert seen == [psf_sigma_from_mtf(0.1), psf_sigma_from_mtf(0.4)]
    seen.clear()
    run(series, tmp_path, engine, bands=[1, 2], sensor_mtf=[0.2])
    assert seen == [psf_sigma_from_mtf(0.2)] * 2
    (tmp_path / "sr.tif").unlink()
    with pytest.raises(MisrError, match=r"^--sensor-mtf: 2 values for 3 bands \(give one for every band, or one "):
        run(series, tmp_path, engine, bands="all", sensor_mtf=[0.1, 0.4])
    assert not (tmp_path / "sr.tif").exists()
