"""The plugin's GUI-free logic (qgis_misr.core): names and dates, validation, the engine command
line, finding the engine and reading its models, and the subprocess runner (with small stand-in
scripts: the real engine is exercised end to end in test_plugin_gui.py and
test_plugin_processing.py)."""

from __future__ import annotations

import copy
import datetime as dt
import os
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qgis_misr.core import userfiles
from qgis_misr.core.command import UnsupportedOption, build_command
from qgis_misr.core.engine import (
    EngineCapabilities,
    EngineLimits,
    EngineLocation,
    UnknownModel,
    engine_from_path,
    locate_engine,
    parse_models,
    subprocess_environment,
)
from qgis_misr.core.naming import (
    looks_like_mask,
    match_masks,
    parse_date,
    run_name,
    safe_file_stem,
    unique_name,
    with_frames_used,
)
from qgis_misr.core.params import ALIGN_LABEL, FrameInput, RasterInfo, RunParameters, parse_sensor_mtf
from qgis_misr.core.runner import error_message, run_engine
from qgis_misr.core.validation import (
    ONE_FRAME_NOTE,
    alignment_notes,
    grid_mismatch,
    preselect,
    run_notes,
    screening_notes,
    validate_inputs,
    validate_parameters,
)
from .engine_stub import NEW_MODELS_ANSWER

posix_only = pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX signals and scripts")


def info(name="frame_01", path=None, crs="EPSG:32618", extent=(0.0, 0.0, 300.0, 600.0),
         width=10, height=20, pixel=(30.0, 30.0), bands=1):
    """A north-up raster's description (its grid starts at the extent's top-left corner)."""
    return RasterInfo(name, path, crs, extent, width, height, pixel, bands)


@pytest.fixture()
def files(tmp_path):
    def make(*names):
        paths = []
        for name in names:
            path = tmp_path / name
            path.write_bytes(b"")
            paths.append(str(path))
        return paths
    return make


# -- names and dates -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("LC08_L2SP_20240517_B4", dt.date(2024, 5, 17)),
    ("S2A 2024-05-17 red", dt.date(2024, 5, 17)),
    ("2023_12_01", dt.date(2023, 12, 1)),
    ("frame_03", None),
    ("tile_20241399", None),  # not a calendar date
    ("2024-0517", None),  # mixed separators
])
def test_dates_are_read_from_layer_names(name, expected):
    assert parse_date(name) == expected


def test_masks_are_matched_to_frames_by_name():
    frames = ["frame_01", "frame_02", "frame_03"]
    masks = ["mask_03", "mask_01", "mask_02", "reference"]
    assert match_masks(frames, masks) == ["mask_01", "mask_02", "mask_03"]


def test_masks_are_matched_by_date_and_by_number():
    assert match_masks(["LC08_20240517_B4", "LC08_20240602_B4"],
                       ["clouds_2024-06-02", "clouds_2024-05-17"]) == \
        ["clouds_2024-05-17", "clouds_2024-06-02"]
    assert match_masks(["img_3", "img_12"], ["cloudmask_012", "cloudmask_003"]) == \
        ["cloudmask_003", "cloudmask_012"]


def test_ambiguous_masks_are_left_unmatched():
    assert match_masks(["frame_01"], ["mask_01", "cloud_01"]) == [None]
    assert match_masks(["a", "b"], ["mask_x"]) == [None, None]


def test_mask_like_names_are_recognised():
    assert looks_like_mask("mask_03") and looks_like_mask("LC08_20240517_QA.tif")
    assert not looks_like_mask("frame_03") and not looks_like_mask("masked_area_frame")


def test_run_names_show_the_models_label_dates_and_frame_count_to_the_second():
    name = run_name("PIUnet", ["a", "b"], [dt.date(2024, 6, 2), dt.date(2024, 5, 17)],
                    dt.datetime(2024, 1, 1, 14, 5, 7))
    assert name == "MISR PIUnet 2024-05-17..2024-06-02 (2 frames) 14:05:07"
    assert run_name("FixedNet", ["frame_01", "frame_09"], [None, None],
                    dt.datetime(2024, 1, 1, 9, 0)).startswith("MISR FixedNet frame_01..frame_09")
    assert run_name("", ["a"], [], dt.datetime(2024, 1, 1, 9, 0)) == "MISR a (1 frame) 09:00:00"
    # two runs a few seconds apart (the same minute) have different names
    assert run_name("", ["a"], [], dt.datetime(2024, 1, 1, 9, 0, 1)) != \
        run_name("", ["a"], [], dt.datetime(2024, 1, 1, 9, 0, 2))


def test_run_names_count_the_frames_the_engine_used_and_are_made_unique():
    name = run_name("PIUnet", [f"f{i}" for i in range(9)], [], dt.datetime(2024, 1, 1, 14, 5, 7))
    assert with_frames_used(name, 8) == "MISR PIUnet f0..f8 (8 of 9 frames) 14:05:07"
    assert with_frames_used(name, 9) == name and with_frames_used(name, None) == name
    assert with_frames_used("MISR a (1 frame) 09:00:00", 1) == "MISR a (1 frame) 09:00:00"
    assert unique_name(name, ["other"]) == name
    assert unique_name(name, [name, f"{name} (2)"]) == f"{name} (3)"


def test_export_names_are_clean_file_names():
    assert safe_file_stem("MISR PIUnet 2024-05-17..2024-06-02 (9 frames) 14:05:07") == \
        "MISR_PIUnet_2024-05-17_2024-06-02_9_frames_14_05_07"
    assert safe_file_stem("MISR a..b (8 of 9 frames) 09:00:00 (2)") == "MISR_a_b_8_of_9_frames_09_00_00_2"
    assert ".." not in safe_file_stem("x..y...z") and safe_file_stem("..") == "misr"


# -- validation ----------------------------------------------------------------------------------
def test_matching_frames_and_masks_pass_validation(files):
    a, b, ma, mb = files("a.tif", "b.tif", "ma.tif", "mb.tif")
    frames = [FrameInput(info("a", a), info("ma", ma)), FrameInput(info("b", b), info("mb", mb))]
    assert validate_inputs(frames) == []


def test_validation_lists_every_grid_mismatch(files):
    a, b, c, d, m = files("a.tif", "b.tif", "c.tif", "d.tif", "m.tif")
    frames = [
        FrameInput(info("a", a)),
        FrameInput(info("b", b, crs="EPSG:32633")),
        FrameInput(info("c", c, width=11, extent=(0.0, 0.0, 330.0, 600.0))),
        FrameInput(info("d", d, pixel=(10.0, 10.0), width=30, height=60)),
    ]
    problems = validate_inputs(frames)
    text = "\n".join(problems)
    assert "Frame b: CRS EPSG:32633 differs from EPSG:32618" in text
    assert "Frame c: size 11x20 differs from 10x20; extent" in text  # one line per raster
    assert "Frame d: size 30x60 differs from 10x20; pixel size 10 x 10 differs from 30 x 30 (frame a)" in text


def test_masks_must_match_their_frame_and_be_all_or_none(files):
    a, b, ma = files("a.tif", "b.tif", "ma.tif")
    frames = [FrameInput(info("a", a), info("ma", ma, extent=(30.0, 0.0, 330.0, 600.0))),
              FrameInput(info("b", b))]
    text = "\n".join(validate_inputs(frames))
    assert "Mask ma: extent" in text
    assert "Choose a mask for every frame or for none (no mask: b)" in text


def test_validation_rejects_missing_files_bad_band_and_too_few_frames(tmp_path):
    frames = [FrameInput(info("a", str(tmp_path / "gone.tif"))),
              FrameInput(info("w", None, bands=3))]
    text = "\n".join(validate_inputs(frames, band=4))
    assert "not found" in text and "not a local file" in text
    assert "band 4 does not exist" in text
    assert validate_inputs([]) == ["Choose at least one frame (tick it in the Frames list)."]


def test_one_frame_is_allowed_with_a_note(files, tmp_path):
    (a,) = files("a.tif")
    params = RunParameters(frames=[FrameInput(info("a", a))], output=str(tmp_path / "sr.tif"))
    assert validate_parameters(params, _caps()) == []
    # without masks, a second note: one frame is too few for the automatic cloud screening (issue 17)
    assert run_notes(params) == [ONE_FRAME_NOTE] + screening_notes(params)
    assert "needs 3 frames" in screening_notes(params)[0]
    params.frames.append(FrameInput(info("b", a)))
    assert ONE_FRAME_NOTE not in run_notes(params)


def test_more_frames_than_the_engine_uses_get_a_note_saying_which_it_keeps(files, tmp_path):
    paths = files(*(f"f{index:02d}.tif" for index in range(16)))
    caps = _caps()  # the engine reports max_frames 15
    params = RunParameters(frames=[FrameInput(info(f"f{index:02d}", path)) for index, path in enumerate(paths)],
                           output=str(tmp_path / "sr.tif"))
    notes = run_notes(params, caps)
    assert notes[0] == ("16 frames chosen: the engine uses the 15 clearest once it has screened them for clouds; "
                        "the run's messages name the others.")
    archive = [FrameInput(info(f"f{index:02d}", paths[index % 16])) for index in range(31)]
    assert "screened them for clouds (30 of them at most are screened);" in run_notes(
        RunParameters(frames=archive, output=params.output), caps)[0]
    masked = [FrameInput(item.frame, info(f"m{index:02d}", paths[index])) for index, item in enumerate(params.frames)]
    assert "the 15 clearest by their masks;" in run_notes(RunParameters(frames=masked, output=params.output), caps)[0]
    assert run_notes(params) == run_notes(params, None) and not any("frames chosen" in n for n in run_notes(params))
    params.frames.pop()
    assert not any("frames chosen" in note for note in run_notes(params, caps))  # 15: all used


def test_fine_tuning_needs_the_engines_minimum_number_of_frames(files, tmp_path):
    a, b, c = files("a.tif", "b.tif", "c.tif")
    params = RunParameters(frames=[FrameInput(info("a", a)), FrameInput(info("b", b))],
                           output=str(tmp_path / "sr.tif"), uncertainty="", ttf_enabled=True)
    assert validate_parameters(params, _caps()) == [
        "Test-time fine-tuning needs at least 3 frames (each is predicted from the others); 2 chosen."]
    params.frames.append(FrameInput(info("c", c)))
    assert validate_parameters(params, _caps()) == []
    params.frames.pop()
    assert validate_parameters(params, _caps(OLD_MODELS_ANSWER)) == []  # limit not reported


def test_preselection_ticks_local_files_on_the_first_frames_grid():
    frames = [info("f1", "/d/f1.tif"), info("f2", "/d/f2.tif"), info("basemap", None),
              info("mosaic", "/d/mosaic.vrt", **FINER), info("f3", "/d/f3.tif")]
    assert preselect(frames) == [True, True, False, False, True]
    # the grid most local files share wins, whatever comes first by name
    assert preselect([frames[3]] + frames[:2]) == [False, True, True]
    # with a frame already ticked: its grid
    assert preselect(frames, reference=frames[3]) == [False, False, False, True, False]


def test_parameters_check_outputs(files, tmp_path):
    a, b = files("a.tif", "b.tif")
    frames = [FrameInput(info("a", a)), FrameInput(info("b", b))]
    params = RunParameters(frames=frames, output=a, uncertainty=str(tmp_path / "missing" / "u.tif"))
    text = "\n".join(validate_parameters(params))
    assert "would overwrite an input" in text
    assert "does not exist" in text
    ok = RunParameters(frames=frames, output=str(tmp_path / "sr.tif"), uncertainty="")
    assert validate_parameters(ok) == []


def _caps(answer=None, options=("--ttf-steps", "--align")) -> EngineCapabilities:
    models, limits = parse_models(NEW_MODELS_ANSWER if answer is None else answer)
    return EngineCapabilities(options=frozenset(options), models=models, limits=limits)


def test_tile_size_is_checked_against_the_engines_minimum_only_when_it_reported_one(files, tmp_path):
    a, b = files("a.tif", "b.tif")
    params = RunParameters(frames=[FrameInput(info("a", a)), FrameInput(info("b", b))],
                           output=str(tmp_path / "sr.tif"), uncertainty="", tile_size=20)
    assert validate_parameters(params, _caps()) == [
        "Tile size 20: must be at least 24 pixels (or 0 for the engine's default)."]
    params.tile_size = 24
    assert validate_parameters(params, _caps()) == []
    params.tile_size = 8
    assert validate_parameters(params) == []  # engine not asked: it refuses by itself
    assert validate_parameters(params, _caps(OLD_MODELS_ANSWER)) == []  # no limits reported


def test_models_and_fine_tuning_are_checked_against_the_engines_models(files, tmp_path):
    a, b, c = files("a.tif", "b.tif", "c.tif")
    params = RunParameters(frames=[FrameInput(info("a", a)), FrameInput(info("b", b)), FrameInput(info("c", c))],
                           output=str(tmp_path / "sr.tif"), uncertainty="", model="deepsum")
    assert validate_parameters(params, _caps()) == [
        "Model: this engine has no model 'deepsum'; it offers: piunet (PIUnet), fixednet (FixedNet)."]
    params.model, params.ttf_enabled = "fixednet", True
    assert validate_parameters(params, _caps()) == ["Test-time fine-tuning: FixedNet is not fine-tunable."]
    params.model = "piunet"
    assert validate_parameters(params, _caps()) == []
    params.model = ""  # the engine's default
    assert validate_parameters(params, _caps()) == []
    assert validate_parameters(params, _caps({"models": []})) == [
        "Model: this engine offers no model with weights (misr models --json)."]


FINER = dict(pixel=(10.0, 10.0), width=30, height=60)
"""The footprint of info()'s default raster in pixels 3 times finer."""
FINER_TEXT = "size 30x60 differs from 10x20; pixel size 10 x 10 differs from 30 x 30"


def test_off_grid_frames_block_with_the_align_hint_unless_align_is_set(files, tmp_path):
    a, d, ma, md = files("a.tif", "d.tif", "ma.tif", "md.tif")
    frames = [FrameInput(info("a", a), info("ma", ma)),
              FrameInput(info("d", d, **FINER), info("md", md, **FINER))]
    assert validate_inputs(frames) == [
        f'Frame d: {FINER_TEXT} (frame a). Tick "{ALIGN_LABEL}" to resample it.']
    params = RunParameters(frames=frames, output=str(tmp_path / "sr.tif"), uncertainty="", align=True)
    assert validate_parameters(params) == []
    assert alignment_notes(params) == [
        f"Frame d: {FINER_TEXT} (frame a): will be resampled onto the first frame's grid (bilinear).",
        (f"Mask md: {FINER_TEXT} (frame a): will be resampled onto the first frame's grid "
        "(nearest neighbour).")]
    params.align = False
    assert alignment_notes(params) == []


def test_another_footprint_on_the_first_frames_pixel_grid_is_read_as_it_is_by_an_engine_that_can(files, tmp_path):
    """Landsat scenes of one path and row: one 30 m grid, each scene its own extent. An engine
    that reports ``other_footprints`` reads them whole pixels off, without --align; its mask,
    on the frame's own grid, moves with it. An older engine still needs --align."""
    a, e, ma, me, far = files("a.tif", "e.tif", "ma.tif", "me.tif", "far.tif")
    shifted = dict(extent=(60.0, -30.0, 360.0, 570.0))  # 2 columns right, 1 row down
    frames = [FrameInput(info("a", a), info("ma", ma)), FrameInput(info("e", e, **shifted), info("me", me, **shifted))]
    params = RunParameters(frames=frames, output=str(tmp_path / "sr.tif"), uncertainty="")
    assert validate_parameters(params, _caps()) == []
    assert run_notes(params, _caps())[-1:] == [
        "Frame e: starts 2 columns right of and 1 row below the first pixel of frame a, on its pixel grid (another "
        "footprint): read as it is, not resampled; it covers 76% of frame a."]  # 8 of 10 columns, 19 of 20 rows
    more = frames + [FrameInput(info(name, path, extent=(30.0 * k, 0.0, 300.0 + 30.0 * k, 600.0)),
                                info("m" + name, path + ".m", extent=(30.0 * k, 0.0, 300.0 + 30.0 * k, 600.0)))
                     for k, (name, path) in enumerate(zip("fg", files("f.tif", "g.tif")), start=1)]
    assert alignment_notes(RunParameters(frames=more), footprints=True) == [
        "e, f, g: their own footprints on the pixel grid of frame a, whole pixels off it: read as they are, not "
        "resampled; each covers 76-90% of it."]  # one line for a series
    older = _caps({**NEW_MODELS_ANSWER, "limits": {"scale": 3}})
    [problem] = validate_parameters(params, older)
    assert problem.startswith("Frame e: extent") and problem.endswith(f'Tick "{ALIGN_LABEL}" to resample it.')
    coarse = FrameInput(info("e", e, **shifted), info("me60", me, extent=(60.0, -30.0, 360.0, 570.0), width=5,
                                                       height=10, pixel=(60.0, 60.0)))
    assert validate_parameters(RunParameters(frames=[frames[0], coarse], output=str(tmp_path / "sr.tif"),
                                             uncertainty=""), _caps()) == []  # a 60 m mask moves with its frame
    frames[1] = FrameInput(info("far", far, extent=(600.0, 0.0, 900.0, 600.0)))
    frames[0] = FrameInput(info("a", a))
    assert validate_parameters(params, _caps()) == [
        "Frame far: does not overlap frame a (it starts 20 columns right of its first pixel, on its pixel grid)."]


def test_align_cannot_fix_a_raster_without_crs_when_the_first_frame_has_one(files):
    a, b = files("a.tif", "b.tif")
    frames = [FrameInput(info("a", a)), FrameInput(info("b", b, crs="", **FINER))]
    for align in (False, True):
        [problem] = validate_inputs(frames, align=align)
        assert problem.startswith(f"Frame b: CRS unknown differs from EPSG:32618; {FINER_TEXT}")
        assert problem.endswith("only one of the two has a CRS.") and "Tick" not in problem


# -- the engine's models -----------------------------------------------------------------------
OLD_MODELS_ANSWER = {"models": [{"name": "piunet", "weights": "/w/piunet.safetensors", "default": True},
                                {"name": "deepsum", "weights": None, "default": False}]}


def test_models_are_read_from_the_engines_new_answer():
    models, limits = parse_models(NEW_MODELS_ANSWER)
    assert [(m.name, m.label, m.default) for m in models] == [("piunet", "PIUnet", True),
                                                               ("fixednet", "FixedNet", False)]
    assert models[0].card == "/w/piunet.md" and models[0].can("fine-tunable")
    assert not models[1].can("fine-tunable") and models[1].can("uncertainty")
    assert limits == EngineLimits(scale=3, min_tile_size=24, default_tile_size=128, max_frames=15,
                                  screening_pool=2, min_ttf_frames=3, sensor_mtf_range=(0.02, 0.6), engine_mtf=0.289,
                                  other_footprints=True)


def test_shipped_weights_are_read_and_found_by_name_or_label():
    models, _ = parse_models(NEW_MODELS_ANSWER)
    piunet, fixednet = models
    assert [c.name for c in piunet.weights_options] == ["supervised", "self-supervised"]
    assert piunet.weights_choice("Self-Supervised").path == "/w/piunet_ssl.safetensors"
    assert piunet.weights_choice("self-supervised (no HR)").name == "self-supervised"
    assert piunet.weights_choice("other") is None and fixednet.weights_options == ()


def test_models_are_read_from_the_engines_old_answer():
    """Before labels, capabilities and limits: the name title-cased, nothing refused."""
    models, limits = parse_models(OLD_MODELS_ANSWER)
    assert [(m.name, m.label, m.capabilities) for m in models] == [("piunet", "Piunet", None)]
    assert models[0].can("fine-tunable") and limits == EngineLimits()


def test_a_model_is_found_by_name_or_label_and_unknown_ones_list_the_offer():
    caps = _caps()
    assert caps.model("").name == "piunet"  # the engine's default
    assert caps.model("FIXEDNET").name == caps.model("FixedNet").name == "fixednet"
    with pytest.raises(UnknownModel, match=r"^this engine has no model 'deepsum'; it offers: "
                                           r"piunet \(PIUnet\), fixednet \(FixedNet\)$"):
        caps.model("deepsum")


def test_tiny_coordinate_noise_is_not_a_mismatch():
    a = info()
    b = info(extent=(1e-9, 0.0, 300.0 + 1e-9, 600.0), pixel=(30.0 + 1e-9, 30.0))
    assert grid_mismatch(a, b) == []


# -- command line ----------------------------------------------------------------------------------
def _params(tmp_path, **changes):
    frames = [FrameInput(info(f"f{i}", f"/data/f{i}.tif"), info(f"m{i}", f"/data/m{i}.tif"))
              for i in (1, 2)]
    values = dict(frames=frames, output=str(tmp_path / "sr.tif"), uncertainty=str(tmp_path / "u.tif"),
                  band=2, device="cuda:0", tile_size=64)
    values.update(changes)
    return RunParameters(**values)


def test_command_line_follows_the_engine_contract(tmp_path):
    argv = build_command(["/venv/bin/misr"], _params(tmp_path, model="piunet"))
    assert argv == ["/venv/bin/misr", "super-resolve", "--frames", "/data/f1.tif", "/data/f2.tif",
                    "--masks", "/data/m1.tif", "/data/m2.tif",
                    "--output", str(tmp_path / "sr.tif"), "--uncertainty", str(tmp_path / "u.tif"),
                    "--model", "piunet", "--band", "2", "--device", "cuda:0", "--tile-size", "64",
                    "--progress", "json"]


def test_command_line_without_masks_or_uncertainty(tmp_path):
    params = _params(tmp_path, frames=[FrameInput(info("a", "/d/a.tif")), FrameInput(info("b", "/d/b.tif"))],
                     write_uncertainty=False, tile_size=0, overwrite=True)
    argv = build_command(["misr"], params)
    assert "--masks" not in argv and "--uncertainty" not in argv and "--tile-size" not in argv
    assert "--model" not in argv  # '' = the engine's default
    assert "--overwrite" in argv and argv[-2:] == ["--progress", "json"]


def test_weights_and_the_kernels_file_are_passed_when_chosen(tmp_path, files):
    caps = _caps(options=("--ttf-steps", "--kernels-out"))
    (weights,) = files("adapted.safetensors")
    argv = build_command(["misr"], _params(tmp_path, weights=weights, ttf_enabled=True, ttf_steps=7,
                                           kernels_out=str(tmp_path / "k.json")), caps)
    assert argv[argv.index("--weights") + 1] == os.path.abspath(weights)
    assert argv[argv.index("--ttf-steps") + 1] == "7"
    assert argv[argv.index("--kernels-out") + 1] == str(tmp_path / "k.json")
    argv = build_command(["misr"], _params(tmp_path, kernels_out=str(tmp_path / "k.json")), caps)
    assert "--weights" not in argv and "--kernels-out" not in argv  # no fine-tuning: no kernels
    caps = _caps(options=("--ttf-steps",))
    with pytest.raises(UnsupportedOption, match="--kernels-out"):
        build_command(["misr"], _params(tmp_path, ttf_enabled=True, kernels_out=str(tmp_path / "k.json")), caps)


def test_an_area_is_passed_to_the_engine_and_must_overlap_the_first_frame(tmp_path):
    """``--extent`` in the first frame's CRS, only when an area is chosen; an area beside the
    first frame (extent 0-300 x 0-600) is a problem before anything runs."""
    assert "--extent" not in build_command(["misr"], _params(tmp_path))
    argv = build_command(["misr"], _params(tmp_path, extent=(30.0, 60.0, 150.5, 300.0)))
    assert argv[argv.index("--extent"):argv.index("--extent") + 5] == ["--extent", "30.0", "60.0", "150.5", "300.0"]
    with pytest.raises(UnsupportedOption, match="--extent"):
        build_command(["misr"], _params(tmp_path, extent=(30.0, 60.0, 150.5, 300.0)), _caps(options=("--align",)))
    assert not any(p.startswith("Area") for p in validate_parameters(_params(tmp_path, extent=(30.0, 60.0, 150.0, 300.0))))
    assert "Area: it does not overlap the first frame (choose it in the frames' CRS, or Whole frames)." in \
        validate_parameters(_params(tmp_path, extent=(400.0, 60.0, 500.0, 300.0)))


def test_a_missing_weights_file_and_a_kernels_file_that_is_not_json_are_problems(files, tmp_path):
    a, b, c = files("a.tif", "b.tif", "c.tif")
    params = RunParameters(frames=[FrameInput(info("a", a)), FrameInput(info("b", b)), FrameInput(info("c", c))],
                           output=str(tmp_path / "sr.tif"), uncertainty="", weights=str(tmp_path / "none.safetensors"),
                           ttf_enabled=True, kernels_out=str(tmp_path / "k.txt"))
    assert validate_parameters(params) == [f"Weights: file {tmp_path / 'none.safetensors'} not found.",
                                           "Blur kernels k.txt: use a .json file name."]


def test_ttf_steps_are_passed_only_when_the_engine_lists_them(tmp_path):
    params = _params(tmp_path, ttf_enabled=True, ttf_steps=30)
    with pytest.raises(UnsupportedOption):
        build_command(["misr"], params, EngineCapabilities(options=frozenset({"--tile-size"})))
    argv = build_command(["misr"], params, EngineCapabilities(options=frozenset({"--ttf-steps"})))
    assert argv[argv.index("--ttf-steps") + 1] == "30"
    assert "--ttf-steps" not in build_command(["misr"], _params(tmp_path))


def test_a_stated_sensor_mtf_is_passed_and_checked_against_the_engines_range(tmp_path):
    assert "--sensor-mtf" not in build_command(["misr"], _params(tmp_path))
    argv = build_command(["misr"], _params(tmp_path, sensor_mtf=(0.15,)), EngineCapabilities(
        options=frozenset({"--sensor-mtf"})))
    assert argv[argv.index("--sensor-mtf") + 1:argv.index("--progress")] == ["0.15"]
    with pytest.raises(UnsupportedOption, match="--sensor-mtf"):
        build_command(["misr"], _params(tmp_path, sensor_mtf=(0.15,)),
                      EngineCapabilities(options=frozenset({"--align"})))

    def problems(mtf, options=("--sensor-mtf",), **changes):
        found = validate_parameters(_params(tmp_path, sensor_mtf=mtf, **changes), _caps(options=options))
        return [p for p in found if p.startswith("Sensor MTF")]  # the frames of _params are not on disk
    assert problems((0.15,)) == [] and problems((), options=()) == []
    assert problems((0.7,)) == [("Sensor MTF 0.7: must be between 0.02 and 0.6 (the MTF at the frames' Nyquist "
                                 "frequency), or unset for the engine's own.")]
    assert problems((0.15,), options=("--align",)) == [
        "Sensor MTF: this engine's 'misr super-resolve --help' has no --sensor-mtf option."]
    # one per band of a multi-band run, in its order; a count that fits neither is refused
    assert problems((0.3, 0.25, 0.2), bands=(4, 3, 2)) == [] and problems((0.3,), bands=(4, 3, 2)) == []
    assert problems((0.3, 0.25), bands=(4, 3, 2)) == [
        ("Sensor MTF: 2 values for 3 bands; give one value for every band (0.28) or one per band, in band "
         "order (0.28, 0.26, 0.25).")]
    assert problems((0.3, 0.25)) == [problems((0.3, 0.25), bands=(4, 3, 2))[0].replace("3 bands", "1 band")]
    assert problems((0.3, 0.9, 0.01), bands=(4, 3, 2)) == [
        f"Sensor MTF {value}: must be between 0.02 and 0.6 (the MTF at the frames' Nyquist frequency), or "
        f"unset for the engine's own." for value in ("0.9", "0.01")]
    argv = build_command(["misr"], _params(tmp_path, sensor_mtf=(0.3, 0.25, 0.2), bands=(4, 3, 2)),
                         EngineCapabilities(options=frozenset({"--sensor-mtf", "--bands"})))
    assert argv[argv.index("--sensor-mtf") + 1:argv.index("--progress")] == ["0.3", "0.25", "0.2"]


@pytest.mark.parametrize("text, values", [("", ()), ("  ", ()), ("0", ()), ("0.28", (0.28,)),
                                          ("0.3, 0.25,0.2", (0.3, 0.25, 0.2)), ("0.3;0.25 0.2", (0.3, 0.25, 0.2))])
def test_the_sensor_mtf_text_reads_as_one_value_or_one_per_band(text, values):
    assert parse_sensor_mtf(text) == values


@pytest.mark.parametrize("text", ["0.3,abc", "high", "0,3,,x"])
def test_a_sensor_mtf_text_that_is_not_numbers_names_itself(text):
    with pytest.raises(ValueError, match=rf"^Sensor MTF '{text}': give one value for every band \(0.28\) or one"):
        parse_sensor_mtf(text)


@pytest.mark.parametrize("reported", [[0.6, 0.02], [0.02], "0.02-0.6", [0.0, 0.6], None])
def test_a_malformed_sensor_mtf_range_is_not_reported(reported):
    answer = copy.deepcopy(NEW_MODELS_ANSWER)
    answer["limits"]["sensor_mtf_range"] = reported
    assert parse_models(answer)[1].sensor_mtf_range is None


def test_align_flag_is_passed_exactly_when_set(tmp_path):
    assert "--align" not in build_command(["misr"], _params(tmp_path))
    argv = build_command(["misr"], _params(tmp_path, align=True))
    assert argv.count("--align") == 1 and argv[-2:] == ["--progress", "json"]
    # refused only by an engine known to lack it (unknown engines reject it themselves)
    with pytest.raises(UnsupportedOption, match="--align"):
        build_command(["misr"], _params(tmp_path, align=True),
                      EngineCapabilities(options=frozenset({"--tile-size"})))
    assert "--align" in build_command(["misr"], _params(tmp_path, align=True),
                                      EngineCapabilities(options=frozenset({"--align"})))


# -- finding the engine ----------------------------------------------------------------------------
def _executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@posix_only
def test_engine_is_found_from_a_venv_folder_its_python_or_misr(tmp_path):
    venv = tmp_path / "venv"
    python = _executable(venv / "bin" / "python")
    assert engine_from_path(str(venv)) == (str(python), "-m", "misr_engine.cli")
    misr = _executable(venv / "bin" / "misr")
    assert engine_from_path(str(venv)) == (str(misr),)
    assert engine_from_path(str(python)) == (str(misr),)
    assert engine_from_path(str(misr)) == (str(misr),)
    assert engine_from_path(str(tmp_path / "nothing")) is None


@posix_only
def test_engine_search_order_settings_env_user_file_repository_path(tmp_path):
    configured = _executable(tmp_path / "configured" / "bin" / "misr")
    from_env = _executable(tmp_path / "env" / "bin" / "misr")
    from_file = _executable(tmp_path / "set-up" / "bin" / "misr")
    repo_venv = _executable(tmp_path / "repo" / ".venv" / "bin" / "misr")
    on_path = _executable(tmp_path / "path" / "misr")
    plugin_dir = tmp_path / "repo" / "qgis_misr"
    plugin_dir.mkdir()
    base = {"PATH": str(tmp_path / "path"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env = dict(base, MISR_ENGINE=str(tmp_path / "env"))
    assert locate_engine(str(tmp_path / "configured"), env, plugin_dir) == \
        EngineLocation((str(configured),), "plugin settings")
    assert locate_engine("", env, plugin_dir).argv == (str(from_env),)
    assert locate_engine("", base, plugin_dir).argv == (str(repo_venv),)
    # the engine written for every profile and qgis_process comes before the repository's
    assert userfiles.write_engine_path(str(tmp_path / "set-up"), base) is None
    found = locate_engine("", base, plugin_dir)
    assert found.argv == (str(from_file),) and found.source == str(tmp_path / "config" / "qgis-misr" / "engine.json")
    assert userfiles.write_engine_path("", base) is None and userfiles.read_engine_path(base) == ""
    assert locate_engine("", base, tmp_path).argv == (str(on_path),)
    assert locate_engine("", dict(base, PATH=""), tmp_path) is None


def test_a_missing_engine_is_explained_naming_the_environment_variable():
    from qgis_misr.core.engine import ENGINE_NOT_FOUND, probe_engine
    assert "MISR_ENGINE" in ENGINE_NOT_FOUND and "\n" not in ENGINE_NOT_FOUND
    assert probe_engine(None).error == ENGINE_NOT_FOUND


def test_an_unreadable_user_file_is_ignored(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    (tmp_path / "qgis-misr").mkdir()
    (tmp_path / "qgis-misr" / "engine.json").write_text("{not json")
    assert userfiles.read_engine_path(env) == ""
    (tmp_path / "qgis-misr" / "engine.json").write_text('["a list"]')
    assert userfiles.read_engine_path(env) == ""


def test_engine_environment_drops_qgis_python_settings(monkeypatch):
    monkeypatch.setenv("PYTHONHOME", "/qgis/python")
    monkeypatch.setenv("PYTHONPATH", "/qgis/python/plugins")
    env = subprocess_environment({"CUDA_VISIBLE_DEVICES": "1"})
    assert "PYTHONHOME" not in env and "PYTHONPATH" not in env
    assert env["PYTHONUNBUFFERED"] == "1" and env["CUDA_VISIBLE_DEVICES"] == "1"


# -- the runner ------------------------------------------------------------------------------------
def _script(tmp_path: Path, body: str) -> list:
    path = tmp_path / "fake_misr.py"
    path.write_text("import json, os, signal, sys, time\n" + textwrap.dedent(body))
    return [sys.executable, str(path)]


def test_runner_reads_json_events_and_the_done_event(tmp_path):
    out = tmp_path / "sr.tif"
    argv = _script(tmp_path, f"""
        print(json.dumps({{"event": "start", "frames": 2, "device": "cpu", "model": "piunet"}}), flush=True)
        print("a line that is not JSON", flush=True)
        for i in range(1, 5):
            print(json.dumps({{"event": "progress", "fraction": i / 4, "message": f"tile {{i}}/4"}}), flush=True)
        print(json.dumps({{"event": "warning", "message": "frame 2 is cloudy"}}), flush=True)
        open({str(out)!r}, "w").write("x")
        print(json.dumps({{"event": "done", "output": {str(out)!r}, "device": "cpu", "seconds": 0.1}}), flush=True)
    """)
    events = []
    result = run_engine(argv, [str(out)], events.append)
    assert result.ok, result.error
    assert [e["fraction"] for e in events if e["event"] == "progress"] == [0.25, 0.5, 0.75, 1.0]
    assert {"event": "log", "message": "a line that is not JSON"} in events
    assert result.warnings == ["frame 2 is cloudy"] and result.done["output"] == str(out)
    assert out.exists()


def test_runner_calls_on_wait_every_second_while_the_engine_is_silent(tmp_path):
    argv = _script(tmp_path, """
        print(json.dumps({"event": "start", "frames": 2}), flush=True)
        time.sleep(2.5)
        print(json.dumps({"event": "done", "output": "x", "device": "cpu"}), flush=True)
    """)
    events, waits = [], []
    result = run_engine(argv, [], events.append, on_wait=lambda: waits.append(len(events)))
    assert result.ok, result.error
    assert len(waits) >= 2 and waits[-1] == 1  # each second of silence, after the start


def test_runner_reports_the_engines_one_line_error(tmp_path):
    argv = _script(tmp_path, """
        print(json.dumps({"event": "error", "message": "frames a.tif and b.tif have different CRS"}), flush=True)
        print("misr: error: frames a.tif and b.tif have different CRS", file=sys.stderr)
        sys.exit(2)
    """)
    result = run_engine(argv)
    assert not result.ok and result.returncode == 2
    assert result.error == "frames a.tif and b.tif have different CRS"


def test_error_message_falls_back_to_stderr_then_status():
    assert error_message(2, None, ["loading", "misr: error: x.tif: not found", ""]) == "x.tif: not found"
    assert error_message(1, None, ["Traceback", "ValueError: boom"]) == "ValueError: boom"
    assert error_message(-9, None, []) == "the engine was stopped by signal 9"
    assert error_message(3, None, []) == "the engine exited with status 3"


def test_runner_reports_an_engine_that_cannot_start(tmp_path):
    result = run_engine([str(tmp_path / "no-such-misr")])
    assert not result.ok and "cannot start the engine" in result.error


@posix_only
def test_cancel_kills_an_engine_that_ignores_sigterm_and_removes_its_files(tmp_path):
    out = tmp_path / "sr.tif"
    partial = tmp_path / ".sr.tif.partial"
    keep = tmp_path / "unrelated.txt"
    keep.write_text("mine")
    argv = _script(tmp_path, f"""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(partial)!r}, "w").write("half")
        print(json.dumps({{"event": "start", "frames": 2}}), flush=True)
        while True:
            print(json.dumps({{"event": "progress", "fraction": 0.1}}), flush=True)
            time.sleep(0.05)
    """)
    started = []
    result = run_engine(argv, [str(out)], started.append, lambda: len(started) > 2, grace_s=0.5)
    assert result.canceled and result.killed and not result.ok
    assert not partial.exists() and keep.exists()
    assert sorted(os.listdir(tmp_path)) == ["fake_misr.py", "unrelated.txt"]


@posix_only
def test_cancel_sends_sigterm_first(tmp_path):
    argv = _script(tmp_path, """
        def stop(signum, frame):
            print(json.dumps({"event": "error", "message": "interrupted; no output written"}), flush=True)
            sys.exit(130)
        signal.signal(signal.SIGTERM, stop)
        print(json.dumps({"event": "start"}), flush=True)
        time.sleep(30)
    """)
    seen = []
    begin = time.monotonic()
    result = run_engine(argv, [], seen.append, lambda: bool(seen), grace_s=10)
    assert result.canceled and not result.killed and result.returncode == 130
    assert time.monotonic() - begin < 10


def test_a_chosen_date_is_passed_only_when_chosen_and_must_be_a_ticked_frame(tmp_path):
    assert "--reference-frame" not in build_command(["misr"], _params(tmp_path))
    chosen = _params(tmp_path, reference_frame="/data/f2.tif")
    argv = build_command(["misr"], chosen, EngineCapabilities(options=frozenset({"--reference-frame"})))
    assert argv[argv.index("--reference-frame") + 1] == "/data/f2.tif"
    with pytest.raises(UnsupportedOption, match="--reference-frame"):
        build_command(["misr"], chosen, EngineCapabilities(options=frozenset({"--sensor-mtf"})))
    assert not any("Surface shown" in p for p in validate_parameters(chosen, _caps(options=("--reference-frame",))))
    elsewhere = validate_parameters(_params(tmp_path, reference_frame="/data/other.tif"))
    assert "Surface shown: the frame of that date is not among the frames ticked." in elsewhere
    assert any("no --reference-frame option" in p for p in validate_parameters(chosen, _caps(options=("--bands",))))


def test_keeping_noisy_frames_is_passed_only_when_asked_and_only_to_an_engine_that_leaves_them_out(tmp_path):
    assert "--keep-noisy-frames" not in build_command(["misr"], _params(tmp_path))
    keep = _params(tmp_path, keep_noisy_frames=True)
    assert "--keep-noisy-frames" in build_command(["misr"], keep)  # engine not asked: passed
    assert "--keep-noisy-frames" in build_command(
        ["misr"], keep, EngineCapabilities(options=frozenset({"--keep-noisy-frames"})))
    # an older engine has no such option and leaves no frame out: nothing to ask, no failure
    assert "--keep-noisy-frames" not in build_command(
        ["misr"], keep, EngineCapabilities(options=frozenset({"--reference-frame"})))
