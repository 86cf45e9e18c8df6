"""Reliability of `misr super-resolve` through the real command line (issue 6): every bad input
gives one clear line and exit 2 before any work, degenerate data is handled, nothing is lost or
clobbered, odd sizes work. Rasters are tiny (16 x 16 LR, one tile), built with GDAL in tmp_path.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from misr_engine.models.registry import model_spec
from misr_engine.resources import sample_dir
from tests.engine.cli.helpers import (FAST, MISR, default_signals, assert_clean_error, assert_ok, events, files_in, make_scene, read,
                                      super_resolve, warnings_of)
from tests.rasters import GEOTRANSFORM, make_raster, textured

SAMPLE = sample_dir()
WEIGHTS = model_spec("piunet").default_weights


# ---------------------------------------------------------------------------------------------
# 1. Validation: one line naming the file and the problem, exit 2, nothing run, nothing written


def test_missing_frame_and_missing_mask_are_named(tmp_path):
    scene = make_scene(tmp_path)
    result = super_resolve([scene.frames[0], str(tmp_path / "nope.tif")], tmp_path / "sr.tif")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "nope.tif", "file not found")
    result = super_resolve(scene, tmp_path / "sr.tif", masks=[scene.masks[0], str(tmp_path / "gone.tif")])
    assert_clean_error(result.returncode, result.stdout, result.stderr, "gone.tif", "file not found")
    assert not (tmp_path / "sr.tif").exists()


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n", b"II*\x00" + bytes(100)],
                         ids=["empty", "text", "tiff-magic-then-zeros"])
def test_a_file_that_is_not_a_raster_is_named(tmp_path, content):
    scene = make_scene(tmp_path)
    bogus = tmp_path / "bogus.tif"
    bogus.write_bytes(content)
    result = super_resolve([scene.frames[0], str(bogus)], tmp_path / "sr.tif")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "bogus.tif", "not a readable raster")


def test_a_directory_given_as_frame_is_named(tmp_path):
    scene = make_scene(tmp_path)
    result = super_resolve([scene.frames[0], str(tmp_path / "inputs")], tmp_path / "sr.tif")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "inputs", "directory")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_frame_is_named(tmp_path):
    scene = make_scene(tmp_path)
    os.chmod(scene.frames[1], 0)
    result = super_resolve(scene, tmp_path / "sr.tif")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "frame_02.tif", "permission denied")


def test_a_truncated_geotiff_fails_fast_before_the_model_runs(tmp_path):
    """A real sample frame cut in the middle of its compressed tiles: the header opens, the pixels
    do not; the error comes while reading the stack (no 'start' event: no model was run)."""
    frames = [str(SAMPLE / f"frame_0{i}.tif") for i in (1, 2)]
    cut = tmp_path / "frame_cut.tif"
    data = Path(frames[1]).read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    (tmp_path / "out").mkdir()
    result = super_resolve([frames[0], str(cut)], tmp_path / "out" / "sr.tif", "--tile-size", "128")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "frame_cut.tif",
                       "corrupt or unreadable pixel data")
    assert not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("difference", ["crs", "size", "geotransform"])
def test_frames_on_different_grids_are_refused_with_a_hint_to_align(tmp_path, difference):
    scene = make_scene(tmp_path)
    odd = tmp_path / "odd.tif"
    if difference == "crs":
        make_raster(odd, textured(16, 16, 5), epsg=32634)
    elif difference == "size":  # other pixels (one more column alone would be another footprint: read as it is)
        make_raster(odd, textured(16, 17, 5), geotransform=(500000.0, 20.0, 0.0, 4000000.0, 0.0, -20.0))
    else:
        make_raster(odd, textured(16, 16, 5), geotransform=(500010.0, *GEOTRANSFORM[1:]))
    result = super_resolve([*scene.frames, str(odd)], tmp_path / "sr.tif")
    line = assert_clean_error(result.returncode, result.stdout, result.stderr, "odd.tif", "frame_01.tif",
                              "--align")
    assert {"crs": "CRS", "size": "size", "geotransform": "geotransform"}[difference] in line


def test_a_mask_off_its_frame_grid_is_refused_with_a_hint_to_align(tmp_path):
    scene = make_scene(tmp_path)
    make_raster(scene.masks[1], np.ones((16, 16), np.uint8), gdal.GDT_Byte,
                geotransform=(500015.0, *GEOTRANSFORM[1:]))  # half a pixel off (whole pixels: read as it is)
    result = super_resolve(scene, tmp_path / "sr.tif")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "mask_02.tif", "frame_02.tif",
                       "--align")


def test_align_resamples_frames_and_masks_onto_the_first_frame_grid(tmp_path):
    """Frame 2 in another CRS (EPSG:4326) and size, frame 3 shifted by half a pixel with its mask
    on its own grid: --align warps them (in memory) onto frame 1's grid and the run succeeds."""
    scene = make_scene(tmp_path, count=3)
    moved = tmp_path / "inputs" / "frame_02.tif"
    gdal.Warp(str(tmp_path / "inputs" / "geographic.tif"), scene.frames[1], dstSRS="EPSG:4326",
              resampleAlg="bilinear", outputType=gdal.GDT_Float32)
    os.replace(tmp_path / "inputs" / "geographic.tif", moved)
    shifted = (GEOTRANSFORM[0] + 15.0, *GEOTRANSFORM[1:])
    make_raster(scene.frames[2], textured(16, 16, 2), geotransform=shifted)
    make_raster(scene.masks[2], np.ones((16, 16), np.uint8), gdal.GDT_Byte, geotransform=shifted)
    make_raster(scene.masks[1], np.ones((16, 16), np.uint8), gdal.GDT_Byte)  # on frame 1's grid
    before = files_in(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    result = super_resolve(scene, out / "sr.tif", "--align", "--uncertainty", str(out / "unc.tif"))
    found = assert_ok(result)
    assert any("--align" in message and "2 frame(s) and 1 mask(s)" in message for message in warnings_of(found))
    sr, dataset = read(out / "sr.tif")
    x0, dx, _, y0, _, dy = GEOTRANSFORM
    assert dataset.GetGeoTransform() == pytest.approx((x0, dx / 3, 0, y0, 0, dy / 3))
    assert sr.shape == (48, 48) and np.isfinite(sr).all()  # frame 1 covers the whole grid
    assert sorted(os.listdir(out)) == ["sr.tif", "unc.tif"]
    assert files_in(tmp_path / "inputs") == {k[len("inputs/"):]: v for k, v in before.items()}


def test_without_align_the_same_frames_are_refused(tmp_path):
    scene = make_scene(tmp_path)
    gdal.Warp(str(tmp_path / "geographic.tif"), scene.frames[1], dstSRS="EPSG:4326")
    result = super_resolve([scene.frames[0], str(tmp_path / "geographic.tif")], tmp_path / "sr.tif")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "geographic.tif", "--align")


@pytest.mark.parametrize("count", [1, 3])
def test_the_number_of_masks_must_match_the_frames(tmp_path, count):
    scene = make_scene(tmp_path, count=2)
    masks = (scene.masks * 2)[:count]
    result = super_resolve(scene, tmp_path / "sr.tif", masks=masks)
    assert_clean_error(result.returncode, result.stdout, result.stderr, f"{count} masks given for 2 frames")


def multiband_scene(tmp_path: Path) -> list[str]:
    """Two 3-band frames; band b holds the texture at level 1000 * b."""
    paths = []
    for index in range(2):
        bands = np.stack([textured(16, 16, index, level=1000.0 * b) for b in (1, 2, 3)])
        paths.append(str(make_raster(tmp_path / f"rgb_{index + 1}.tif", bands)))
    return paths


def test_a_multiband_frame_needs_band(tmp_path):
    result = super_resolve(multiband_scene(tmp_path), tmp_path / "sr.tif")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "rgb_1.tif", "3 bands", "--band")


@pytest.mark.parametrize("band", ["0", "4"])
def test_band_out_of_range_is_refused(tmp_path, band):
    result = super_resolve(multiband_scene(tmp_path), tmp_path / "sr.tif", "--band", band)
    assert_clean_error(result.returncode, result.stdout, result.stderr, "rgb_1.tif", f"--band {band}",
                       "out of range")


def test_band_selects_one_band_of_multiband_frames(tmp_path):
    assert_ok(super_resolve(multiband_scene(tmp_path), tmp_path / "sr.tif", "--band", "2"))
    sr, _ = read(tmp_path / "sr.tif")
    assert abs(np.nanmean(sr) - (2000 + 300)) < 100


def test_a_multiband_mask_is_refused(tmp_path):
    scene = make_scene(tmp_path)
    make_raster(scene.masks[0], np.ones((2, 16, 16), np.uint8), gdal.GDT_Byte)
    result = super_resolve(scene, tmp_path / "sr.tif")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "mask_01.tif", "2 bands",
                       "exactly one")


@pytest.mark.parametrize("data_type", [gdal.GDT_CFloat32, gdal.GDT_CInt16])
def test_complex_data_is_refused(tmp_path, data_type):
    scene = make_scene(tmp_path)
    make_raster(tmp_path / "complex.tif", textured(16, 16, 3).astype(np.complex64), data_type)
    result = super_resolve([scene.frames[0], str(tmp_path / "complex.tif")], tmp_path / "sr.tif")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "complex.tif",
                       f"unsupported data type {gdal.GetDataTypeName(data_type)}")


def test_an_output_in_a_missing_directory_is_refused(tmp_path):
    scene = make_scene(tmp_path)
    result = super_resolve(scene, tmp_path / "missing" / "sr.tif")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "sr.tif", "does not exist")
    result = super_resolve(scene, tmp_path / "sr.tif", "--uncertainty", str(tmp_path / "missing" / "unc.tif"))
    assert_clean_error(result.returncode, result.stdout, result.stderr, "unc.tif", "does not exist")


@pytest.mark.parametrize("which", ["output-is-frame", "output-is-mask", "uncertainty-is-frame",
                                   "output-is-link-to-frame", "output-is-weights"])
def test_an_output_equal_to_an_input_is_refused_even_with_overwrite(tmp_path, which):
    scene = make_scene(tmp_path)
    before = files_in(tmp_path)
    output, extra = str(tmp_path / "sr.tif"), []
    if which == "output-is-frame":
        output = scene.frames[1]
    elif which == "output-is-mask":
        output = scene.masks[0]
    elif which == "uncertainty-is-frame":
        extra = ["--uncertainty", scene.frames[0]]
    elif which == "output-is-weights":
        output = str(tmp_path / "copy.safetensors")
        Path(output).write_bytes(WEIGHTS.read_bytes())
        extra = ["--weights", output]
        before = files_in(tmp_path)
    else:
        output = str(tmp_path / "link.tif")
        os.symlink(scene.frames[0], output)
        before = files_in(tmp_path)
    result = super_resolve(scene, Path(output), "--overwrite", *extra)
    assert_clean_error(result.returncode, result.stdout, result.stderr, "would overwrite an input")
    assert files_in(tmp_path) == before


def test_an_output_that_is_a_directory_or_the_uncertainty_file_is_refused(tmp_path):
    scene = make_scene(tmp_path)
    (tmp_path / "folder.tif").mkdir()
    result = super_resolve(scene, tmp_path / "folder.tif", "--overwrite")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "folder.tif", "is a directory")
    result = super_resolve(scene, tmp_path / "sr.tif", "--uncertainty", str(tmp_path / "sr.tif"))
    assert_clean_error(result.returncode, result.stdout, result.stderr, "sr.tif", "same file")


@pytest.mark.parametrize("option", [("--tile-size", "8"), ("--overlap", "-1"), ("--max-frames", "0"),
                                    ("--sensor-mtf", "0.8"), ("--sensor-mtf", "0")])
def test_bad_numbers_are_refused(tmp_path, option):
    result = super_resolve(make_scene(tmp_path), tmp_path / "sr.tif", *option)
    assert_clean_error(result.returncode, result.stdout, result.stderr, f"{option[0]} {option[1]}")


def test_output_checks_come_before_reading_the_frames(tmp_path):
    """An existing output is reported even when a frame is corrupt: nothing is read in vain."""
    scene = make_scene(tmp_path)
    Path(scene.frames[1]).write_bytes(b"corrupt")
    (tmp_path / "sr.tif").write_bytes(b"precious")
    result = super_resolve(scene, tmp_path / "sr.tif")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "sr.tif", "--overwrite")
    assert (tmp_path / "sr.tif").read_bytes() == b"precious"


WEIGHTS_PROBLEMS = {"truncated": "truncated or damaged weights file", "bit-flipped-header": "not a valid weights file",
                    "garbage": "not a valid weights file", "json-list-header": "not a valid weights file",
                    "another-model": "for model 'srcnn', not 'piunet'",
                    "wrong-tensors": "weights do not fit model 'piunet'", "missing": "weights file not found"}


def bad_weights(folder: Path, problem: str) -> Path:
    """A weights file with `problem` (a key of WEIGHTS_PROBLEMS)."""
    path = folder / f"{problem}.safetensors"
    shipped = WEIGHTS.read_bytes()
    if problem == "truncated":
        path.write_bytes(shipped[:len(shipped) // 2])
    elif problem == "bit-flipped-header":
        flipped = bytearray(shipped)
        flipped[8] ^= 0x55  # the JSON header's opening brace (a flip elsewhere may still parse)
        path.write_bytes(bytes(flipped))
    elif problem == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif problem == "json-list-header":
        path.write_bytes(len(b"[1, 2, 3]").to_bytes(8, "little") + b"[1, 2, 3]")
    elif problem in ("another-model", "wrong-tensors"):
        import torch
        from safetensors.torch import save_file
        model = "srcnn" if problem == "another-model" else "piunet"
        save_file({"x": torch.zeros(2)}, str(path), metadata={"model": model})
    return path


@pytest.mark.parametrize("problem", WEIGHTS_PROBLEMS)
def test_bad_weights_are_one_line_errors_before_inference(tmp_path, problem):
    scene = make_scene(tmp_path)
    weights = bad_weights(tmp_path, problem)
    result = super_resolve(scene, tmp_path / "sr.tif", "--weights", str(weights))
    assert_clean_error(result.returncode, result.stdout, result.stderr, weights.name, WEIGHTS_PROBLEMS[problem])
    assert not (tmp_path / "sr.tif").exists()


class _Payload:
    """Unpickling this creates a directory: proof that code ran."""

    def __init__(self, proof: str):
        self.proof = proof

    def __reduce__(self):
        return os.mkdir, (self.proof,)


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickled_weights_are_refused_without_running_them(tmp_path, writer):
    scene = make_scene(tmp_path)
    proof = tmp_path / "code_ran"
    weights = tmp_path / "evil.pt"
    if writer == "pickle":
        weights.write_bytes(pickle.dumps({"state": _Payload(str(proof))}))
    else:
        import torch
        torch.save({"state": _Payload(str(proof))}, str(weights))
    result = super_resolve(scene, tmp_path / "sr.tif", "--weights", str(weights))
    assert_clean_error(result.returncode, result.stdout, result.stderr, "evil.pt", "not a valid weights file")
    assert not proof.exists()


# ---------------------------------------------------------------------------------------------
# 2. Degenerate data: handled, not rejected


def test_a_single_frame_without_mask_works(tmp_path):
    scene = make_scene(tmp_path, count=1, masks=False)
    found = assert_ok(super_resolve(scene, tmp_path / "sr.tif"))
    assert next(e for e in found if e["event"] == "start")["frames"] == 1
    sr, _ = read(tmp_path / "sr.tif")
    assert sr.shape == (48, 48) and np.isfinite(sr).all()


def test_a_fully_cloudy_frame_is_dropped_with_a_warning(tmp_path):
    scene = make_scene(tmp_path, count=3)
    make_raster(scene.masks[1], np.zeros((16, 16), np.uint8), gdal.GDT_Byte)
    found = assert_ok(super_resolve(scene, tmp_path / "sr.tif"))
    assert any("frame_02.tif" in m and "fully cloudy" in m for m in warnings_of(found))
    tags = gdal.Open(str(tmp_path / "sr.tif")).GetMetadata()
    assert tags["MISR_FRAMES"] == "2"
    assert json.loads(tags["MISR_FRAME_FILES"]) == ["frame_01.tif", "frame_03.tif"]


def test_every_frame_fully_cloudy_is_a_clean_error(tmp_path):
    scene = make_scene(tmp_path, count=2)
    for mask in scene.masks:
        make_raster(mask, np.zeros((16, 16), np.uint8), gdal.GDT_Byte)
    result = super_resolve(scene, tmp_path / "sr.tif")
    assert_clean_error(result.returncode, result.stdout, result.stderr, "every frame is fully cloudy",
                       "frame_01.tif")


def test_pixels_cloudy_in_every_frame_are_nan_in_both_outputs(tmp_path):
    scene = make_scene(tmp_path, count=3)
    for index, mask in enumerate(scene.masks):
        clear = np.ones((16, 16), np.uint8)
        clear[4:8, 4:8] = 0  # cloudy everywhere
        clear[10:14, 1 + 5 * index:4 + 5 * index] = 0  # cloudy in this frame only
        make_raster(mask, clear, gdal.GDT_Byte)
    assert_ok(super_resolve(scene, tmp_path / "sr.tif", "--uncertainty", str(tmp_path / "unc.tif")))
    expected = np.zeros((48, 48), bool)
    expected[12:24, 12:24] = True
    for name in ("sr.tif", "unc.tif"):
        values, _ = read(tmp_path / name)
        assert (np.isnan(values) == expected).all(), name


@pytest.mark.parametrize("kind", ["uint16-nodata-0", "float32-nan"])
def test_nodata_marks_invalid_pixels_without_masks(tmp_path, kind):
    """Nodata everywhere in one block -> NaN; nodata in one frame only -> filled from the others,
    never pulled towards the nodata value."""
    frames = []
    for index in range(2):
        data = textured(16, 16, index)
        invalid = np.zeros((16, 16), bool)
        invalid[2:6, 2:6] = True
        invalid[10:14, 10:14] = index == 0
        if kind == "uint16-nodata-0":
            frames.append(str(make_raster(tmp_path / f"f{index}.tif", np.where(invalid, 0, data), nodata=0)))
        else:
            frames.append(str(make_raster(tmp_path / f"f{index}.tif", np.where(invalid, np.nan, data),
                                          gdal.GDT_Float32)))
    assert_ok(super_resolve(frames, tmp_path / "sr.tif", "--uncertainty", str(tmp_path / "unc.tif")))
    for name in ("sr.tif", "unc.tif"):
        values, _ = read(tmp_path / name)
        assert np.isnan(values[6:18, 6:18]).all() and np.isnan(values).sum() == 144, name
    sr, _ = read(tmp_path / "sr.tif")
    assert sr[30:42, 30:42].min() > 800  # the texture is 1000 +- 300: no zero leaked in


@pytest.mark.parametrize("value", [0.0, 1234.0, -7.25])
def test_constant_frames_give_the_constant(tmp_path, value):
    frames = [str(make_raster(tmp_path / f"c{i}.tif", np.full((16, 16), value, np.float32), gdal.GDT_Float32))
              for i in range(3)]
    found = assert_ok(super_resolve(frames, tmp_path / "sr.tif", "--uncertainty", str(tmp_path / "unc.tif")))
    assert all("\n" not in m for m in warnings_of(found))
    sr, _ = read(tmp_path / "sr.tif")
    uncertainty, _ = read(tmp_path / "unc.tif")
    assert np.isfinite(sr).all() and np.isfinite(uncertainty).all() and (uncertainty >= 0).all()
    assert np.abs(sr - value).max() <= 1e-3 * max(1.0, abs(value))


def test_more_frames_than_max_frames_keeps_the_clearest_with_a_warning(tmp_path):
    scene = make_scene(tmp_path, count=18)
    cloudy = {3, 8, 12}  # frames 4, 9 and 13 are half cloudy: the 15 others are the clearest
    for index in cloudy:
        clear = np.ones((16, 16), np.uint8)
        clear[:8] = 0
        make_raster(scene.masks[index], clear, gdal.GDT_Byte)
    found = assert_ok(super_resolve(scene, tmp_path / "sr.tif"))
    warning = next(m for m in warnings_of(found) if "clearest" in m)
    assert all(f"frame_{i + 1:02d}.tif" in warning for i in cloudy)
    tags = gdal.Open(str(tmp_path / "sr.tif")).GetMetadata()
    assert tags["MISR_FRAMES"] == "15"
    assert json.loads(tags["MISR_FRAME_FILES"]) == [f"frame_{i + 1:02d}.tif" for i in range(18) if i not in cloudy]


@pytest.mark.parametrize("height,width", [(5, 7), (1, 1), (17, 22), (40, 9)],
                         ids=["smaller-than-a-tile", "one-pixel", "not-a-multiple-of-the-tile", "tall"])
def test_odd_raster_sizes_work(tmp_path, height, width):
    scene = make_scene(tmp_path, count=2, height=height, width=width)
    assert_ok(super_resolve(scene, tmp_path / "sr.tif", "--uncertainty", str(tmp_path / "unc.tif")))
    inputs = np.stack([read(p)[0] for p in scene.frames])
    for name in ("sr.tif", "unc.tif"):
        values, dataset = read(tmp_path / name)
        assert values.shape == (3 * height, 3 * width) and np.isfinite(values).all(), name
    sr, _ = read(tmp_path / "sr.tif")
    assert abs(sr.mean() - inputs.mean()) < 0.1 * inputs.mean()


@pytest.mark.parametrize("data_type", [gdal.GDT_Byte, gdal.GDT_Int16, gdal.GDT_UInt32, gdal.GDT_Float64,
                                       gdal.GDT_Int64])
def test_any_real_numeric_type_is_read(tmp_path, data_type):
    data = textured(16, 16, 0, level=0.0) / 8  # 0..~100: fits every type
    frame = make_raster(tmp_path / "frame.tif", data, data_type)
    assert_ok(super_resolve([str(frame)], tmp_path / "sr.tif"))
    sr, _ = read(tmp_path / "sr.tif")
    assert abs(sr.mean() - data.mean()) < 10


# ---------------------------------------------------------------------------------------------
# 3. Nothing lost: atomic outputs, --overwrite, interruption, safe weights


def test_existing_outputs_are_kept_without_overwrite(tmp_path):
    scene = make_scene(tmp_path)
    (tmp_path / "unc.tif").write_bytes(b"precious")
    result = super_resolve(scene, tmp_path / "sr.tif", "--uncertainty", str(tmp_path / "unc.tif"))
    assert_clean_error(result.returncode, result.stdout, result.stderr, "unc.tif", "--overwrite")
    assert (tmp_path / "unc.tif").read_bytes() == b"precious"
    assert not (tmp_path / "sr.tif").exists()


def test_overwrite_replaces_both_outputs_and_drops_their_stale_sidecars(tmp_path):
    scene = make_scene(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("sr.tif", "unc.tif", "sr.tif.aux.xml", "unc.tif.ovr"):
        (out / name).write_bytes(b"old")
    assert_ok(super_resolve(scene, out / "sr.tif", "--uncertainty", str(out / "unc.tif"), "--overwrite"))
    assert sorted(os.listdir(out)) == ["sr.tif", "unc.tif"]  # no temporary, no stale statistics
    umask = os.umask(0)
    os.umask(umask)
    for name in ("sr.tif", "unc.tif"):
        values, _ = read(out / name)
        assert values.shape == (48, 48)
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o666 & ~umask


def _old_outputs(folder: Path) -> dict[str, bytes]:
    for name in ("sr.tif", "unc.tif"):
        (folder / name).write_bytes(f"old {name}".encode())
    return files_in(folder)


class _FailingDriver:
    """The GTiff driver, except that its second Create (the uncertainty file) raises `error`."""

    def __init__(self, error: BaseException):
        self.driver, self.error, self.calls = gdal.GetDriverByName("GTiff"), error, 0

    def Create(self, *args, **kwargs):  # noqa: N802 (GDAL's name)
        self.calls += 1
        if self.calls == 2:
            raise self.error
        return self.driver.Create(*args, **kwargs)


def _fail_second_output(monkeypatch, error: BaseException) -> _FailingDriver:
    """Whatever writes the outputs gets its GeoTIFF driver from gdal.GetDriverByName."""
    driver = _FailingDriver(error)
    real = gdal.GetDriverByName
    monkeypatch.setattr(gdal, "GetDriverByName", lambda name: driver if name == "GTiff" else real(name))
    return driver


def _run_in_process(scene, out: Path, capsys) -> tuple[int, str, str]:
    from misr_engine.cli import main
    handler = signal.getsignal(signal.SIGTERM)
    try:
        status = main(["super-resolve", "--frames", *scene.frames, "--masks", *scene.masks, "-o", str(out / "sr.tif"),
                       "--uncertainty", str(out / "unc.tif"), "--overwrite", "--progress", "json", *FAST])
    finally:
        signal.signal(signal.SIGTERM, handler)  # main() installs its own
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_failure_writing_the_second_output_keeps_both_old_files(tmp_path, monkeypatch, capsys):
    """Disk full when creating the uncertainty file: neither new file appears, the old ones stay."""
    scene = make_scene(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    before = _old_outputs(out)
    driver = _fail_second_output(monkeypatch, RuntimeError("No space left on device"))
    status, stdout, stderr = _run_in_process(scene, out, capsys)
    assert driver.calls == 2
    assert_clean_error(status, "", stderr, "unc.tif", "cannot write: disk full")
    assert files_in(out) == before


def test_a_failed_rename_rolls_back_to_the_old_files(tmp_path, monkeypatch, capsys):
    """The SR file was already moved into place when moving the uncertainty fails: it is undone."""
    import misr_engine.rasters.outputs as raster_io
    scene = make_scene(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    before = _old_outputs(out)
    real = os.replace

    def replace(source, target):
        if str(target) == str(out / "unc.tif") and ".partial" in str(source):
            raise OSError(28, "No space left on device")
        return real(source, target)

    monkeypatch.setattr(raster_io.os, "replace", replace)
    status, _, stderr = _run_in_process(scene, out, capsys)
    assert_clean_error(status, "", stderr, "unc.tif", "cannot replace", "existing files kept")
    assert files_in(out) == before


def test_an_interruption_while_writing_leaves_no_file(tmp_path, monkeypatch, capsys):
    scene = make_scene(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    before = _old_outputs(out)
    driver = _fail_second_output(monkeypatch, KeyboardInterrupt())
    status, _, stderr = _run_in_process(scene, out, capsys)
    assert driver.calls == 2
    assert status == 130 and stderr.strip().splitlines() == ["misr: error: interrupted; no output written"]
    assert files_in(out) == before


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_signal_during_the_run_exits_130_and_leaves_no_file(tmp_path, signal_number):
    """The real sample with 16-pixel tiles (many tiles): signalled after the first progress event."""
    frames = sorted(str(p) for p in SAMPLE.glob("frame_*.tif"))
    masks = sorted(str(p) for p in SAMPLE.glob("mask_*.tif"))
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen([*MISR, "super-resolve", "--frames", *frames, "--masks", *masks,
                                "-o", str(out / "sr.tif"), "--uncertainty", str(out / "unc.tif"),
                                "--tile-size", "16", "--progress", "json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # a shell's background job (e.g. `make test &`) ignores SIGINT and
                               # Python keeps that: give the engine the default disposition
                               preexec_fn=default_signals)
    try:
        for line in process.stdout:
            if json.loads(line)["event"] == "progress":
                break
        else:
            pytest.fail("no progress event")
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "misr: error: interrupted; no output written"
    assert "Traceback" not in stderr
    assert os.listdir(out) == []
