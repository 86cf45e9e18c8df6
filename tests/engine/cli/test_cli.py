"""The `misr super-resolve` command on the real sample: georeferencing, metadata, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr

from misr_engine.models.weights import file_sha256
from misr_engine.models.registry import model_spec
from tests.rasters import make_raster

MISR = [sys.executable, "-m", "misr_engine.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MISR, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, sample_paths):
    frames, masks = sample_paths
    out = tmp_path_factory.mktemp("sr")
    result = run("super-resolve", "--frames", *frames, "--masks", *masks, "--output", str(out / "sr.tif"),
                 "--uncertainty", str(out / "unc.tif"), "--progress", "json", "--tile-size", "96")
    assert result.returncode == 0, result.stderr
    return out, result


def test_output_is_on_the_input_grid_refined_three_times(outputs, sample_paths):
    out, _ = outputs
    source = gdal.Open(sample_paths[0][0])
    x0, dx, _, y0, _, dy = source.GetGeoTransform()
    for name in ("sr.tif", "unc.tif"):
        dataset = gdal.Open(str(out / name))
        assert (dataset.RasterXSize, dataset.RasterYSize) == (3 * source.RasterXSize, 3 * source.RasterYSize)
        ox0, odx, orx, oy0, ory, ody = dataset.GetGeoTransform()
        assert (ox0, oy0, orx, ory) == (x0, y0, 0.0, 0.0)
        assert odx == pytest.approx(dx / 3) and ody == pytest.approx(dy / 3)
        assert osr.SpatialReference(dataset.GetProjection()).IsSame(osr.SpatialReference(source.GetProjection()))
        band = dataset.GetRasterBand(1)
        assert band.DataType == gdal.GDT_Float32 and np.isnan(band.GetNoDataValue())
        assert dataset.GetMetadata("IMAGE_STRUCTURE").get("COMPRESSION") == "DEFLATE"
        assert band.GetBlockSize() == [256, 256]


def test_output_values_are_in_input_units_and_tagged(outputs, sample_paths):
    out, _ = outputs
    sr = gdal.Open(str(out / "sr.tif"))
    reference = gdal.Open(str(Path(sample_paths[0][0]).parent / "reference_hr.tif")).ReadAsArray().astype(float)
    values = sr.ReadAsArray()
    assert abs(np.nanmean(values) - reference.mean()) < 0.05 * reference.mean()
    uncertainty = gdal.Open(str(out / "unc.tif")).ReadAsArray()
    assert 0 < np.nanmedian(uncertainty) < reference.std()
    tags = sr.GetMetadata()
    assert tags["MISR_MODEL"] == "piunet" and tags["MISR_FRAMES"] == "8"  # frame 06 is fully cloudy
    assert tags["MISR_WEIGHTS_SHA256"] == file_sha256(model_spec("piunet").default_weights)
    assert tags["MISR_ENGINE_VERSION"]


def test_output_of_unsigned_input_is_clipped_at_zero(tmp_path, sample_paths):
    """The SR undershoots a little beside the sharpest edges (the sample's lowest SR pixel is 44 DN
    where the darkest true one is 167). The sample's frames darkened by 200 DN: as float32 the SR
    goes below 0 there; as uint16, the input's type, it is clipped to its range: some pixels
    exactly 0, none below."""
    frames, masks = sample_paths
    lowest = {}
    for name, data_type in (("float32", gdal.GDT_Float32), ("uint16", gdal.GDT_UInt16)):
        darkened = []
        for index, path in enumerate(frames):
            source = gdal.Open(path)
            values = np.clip(source.ReadAsArray().astype(np.float64) - 200.0, 0.0, None)
            darkened.append(str(make_raster(tmp_path / f"{name}_{index}.tif", values, data_type,
                                            geotransform=source.GetGeoTransform(), wkt=source.GetProjection())))
        output = tmp_path / f"{name}_sr.tif"
        result = run("super-resolve", "--frames", *darkened, "--masks", *masks, "--output", str(output),
                     "--progress", "none")
        assert result.returncode == 0, result.stderr
        values = gdal.Open(str(output)).ReadAsArray()
        lowest[name] = (np.nanmin(values), int((values == 0).sum()))
    assert lowest["float32"][0] < -50.0
    assert lowest["uint16"][0] == 0.0 and lowest["uint16"][1] > 0


def test_json_progress_reports_start_progress_warning_and_done(outputs):
    _, result = outputs
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "warning" and "frame_06.tif" in events[0]["message"]
    assert "start" in kinds and kinds[-1] == "done"
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_missing_frame_is_a_one_line_error_naming_it(tmp_path, sample_paths):
    frames, _ = sample_paths
    result = run("super-resolve", "--frames", frames[0], str(tmp_path / "nope.tif"), "-o", str(tmp_path / "sr.tif"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "nope.tif" in result.stderr and "not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


def test_existing_output_is_kept_without_overwrite(tmp_path, sample_paths):
    frames, masks = sample_paths
    target = tmp_path / "sr.tif"
    target.write_bytes(b"precious")
    result = run("super-resolve", "--frames", *frames[:3], "-o", str(target))
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert target.read_bytes() == b"precious"


def test_help_documents_every_flag():
    result = run("super-resolve", "--help")
    for flag in ("--frames", "--masks", "--output", "--uncertainty", "--model", "--weights",
                 "--device", "--tile-size", "--band", "--overwrite", "--progress"):
        assert flag in result.stdout


def test_every_command_prints_its_help():
    """argparse formats help strings with %: one stray % breaks a command's --help."""
    from misr_engine.cli.app import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for name, parser in commands.items():
        assert parser.format_help(), name


def test_models_json_lists_the_shipped_weights_options_with_their_cards_and_the_ttf_default():
    from misr_engine.inference.finetune import DEFAULT_STEPS
    from misr_engine.pipeline import SCREENING_POOL
    from misr_engine.models.registry import MODELS
    result = run("models", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    (piunet,) = [m for m in answer["models"] if m["name"] == "piunet"]
    options = {o["name"]: o for o in piunet["weights_options"]}
    assert list(options)[0] == "supervised" and options["supervised"]["weights"] == piunet["weights"]
    declared = {option.name: option.path for option in MODELS["piunet"].weights_options}
    assert set(options) == {name for name, path in declared.items() if path.is_file()}  # installed ones only
    for option in options.values():
        assert Path(option["weights"]).is_file() and Path(option["card"]).is_file()
    assert answer["limits"]["default_ttf_steps"] == DEFAULT_STEPS
    assert answer["limits"]["screening_pool"] == SCREENING_POOL  # the plugin's note on frames reads it
    listing = run("models").stdout
    for option in list(options.values())[1:]:
        assert f"--weights {option['weights']}: {option['label']}\n" in listing  # the label names the option
