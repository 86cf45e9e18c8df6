"""An analyst's own HR raster measured the way the project's sets are: `misr make-dataset --hr
FILE --raw`, then `misr evaluate --data`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from misr_engine import SCALE
from misr_engine.datasets.samples import MARGIN, MIN_TEXTURE, build_samples, read_image_band
from misr_engine.rasters.bands import read_band
from misr_engine.errors import MisrError
from misr_engine.resources import sample_dir
from osgeo import gdal

from tests.rasters import make_raster

LR_SIZE = 16
COUNT = 6


def half_water_raster(path: str) -> np.ndarray:
    """The sample's real 10 m image with its left half a flat, faintly noisy surface (water)."""
    image = read_band(str(sample_dir() / "reference_hr.tif"))[0].astype(np.float32)
    half = image.shape[1] // 2
    image[:, :half] = 300.0 + np.random.default_rng(0).normal(0.0, 2.0, (image.shape[0], half))
    make_raster(path, image, gdal.GDT_Float32)
    return image


def misr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "misr_engine.cli", *args], capture_output=True, text=True,
                          timeout=900, check=False)


@pytest.mark.slow
def test_own_raster_draws_no_featureless_crop_and_is_scored_against_the_strongest_classical(tmp_path):
    image = half_water_raster(str(tmp_path / "mine.tif"))
    made = misr("make-dataset", "--hr", str(tmp_path / "mine.tif"), "--raw", "--count", str(COUNT),
                "--lr-size", str(LR_SIZE), "--frames-per-sample", "5", "--seed", "3", "--workers", "1",
                "-o", str(tmp_path / "mine.npz"))
    assert made.returncode == 0, made.stderr
    size = LR_SIZE * SCALE + 2 * MARGIN
    with np.load(tmp_path / "mine.npz") as data:
        origins = data["origins"]
    assert len(origins) == COUNT
    for row, col in origins:  # as `misr evaluate`'s own sets: no crop of open water
        crop = image[row:row + size, col:col + size]
        assert crop.std() >= MIN_TEXTURE * crop.mean(), (row, col)
    assert "featureless crops" in (tmp_path / "mine.card.md").read_text().lower()
    assert "left out" in (tmp_path / "mine.card.md").read_text()

    scored = misr("evaluate", "--data", str(tmp_path / "mine.npz"), "-o", str(tmp_path / "report"))
    assert scored.returncode == 0, scored.stderr
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert list(results["sets"]) == ["data"]
    margin = results["sets"]["data"]["margins"]["piunet"]["strongest_classical"]
    assert len(margin["per_scene"]) == COUNT and np.all(np.isfinite(margin["per_scene"]))
    assert margin["ci95"][0] <= margin["mean"] <= margin["ci95"][1]


@pytest.mark.parametrize("nodata", [None, 0, -9999])
def test_crops_of_a_footprint_never_touch_its_fill(tmp_path, nodata):
    """A Landsat scene: a tilted footprint in a north-up raster, filled around it (0, declared or
    not, or a nodata value). No crop touches the fill (21 of 40 did: HR crops with zeros), and the
    fill stays out of the band's normalisation."""
    image = read_band(str(sample_dir() / "reference_hr.tif"))[0]
    rows, cols = np.mgrid[:image.shape[0], :image.shape[1]]
    fill = (cols < 0.2 * image.shape[1] + 0.3 * rows) | (rows > 0.85 * image.shape[0])
    image = np.where(fill, 0 if nodata is None else nodata, image)
    path = str(tmp_path / "scene.tif")
    make_raster(path, image.astype(np.int16), gdal.GDT_Int16, nodata=nodata)
    assert np.array_equal(read_image_band(path)[1], ~fill)
    samples = build_samples([path], ((0, None), (0, None)), 12, LR_SIZE, 3, seed=1, workers=1, registered=False)
    size = LR_SIZE * SCALE + 2 * MARGIN
    for row, col in samples["origins"]:
        assert not fill[row:row + size, col:col + size].any(), (row, col)
    assert samples["norm"][0][0] == pytest.approx(np.median(image[~fill]), rel=0.02)
    with pytest.raises(MisrError, match=r"scene\.tif: no 300 x 300 px window of image pixels"):
        build_samples([path], ((0, None), (0, None)), 2, 92, 3, seed=1, workers=1, registered=False)


def test_a_raster_exactly_one_crop_wide_is_a_one_line_error(tmp_path):
    """The crops' corners are drawn short of the last one: a raster the size of one crop has none
    to draw (it raised numpy's ValueError)."""
    path = str(tmp_path / "tight.tif")
    make_raster(path, read_band(str(sample_dir() / "reference_hr.tif"))[0].astype(np.int16), gdal.GDT_Int16)
    with pytest.raises(MisrError, match=r"tight\.tif: no 420 x 420 px window of image pixels"):
        build_samples([path], ((0, None), (0, None)), 2, 132, 3, seed=1, workers=1, registered=False)
