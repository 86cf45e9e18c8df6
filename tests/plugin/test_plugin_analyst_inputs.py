"""What analysts bring, on the plugin's side: the kind of each mask (detected as the engine does,
shown, changeable), coarser product masks, the note about automatic cloud screening, the band
choice (one, all, a list), the engine options for them, and the RGB rendering of a 3-band SR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qgis_misr.core.command import UnsupportedOption, build_command
from qgis_misr.core.engine import EngineCapabilities
from qgis_misr.core.grid import Grid as PluginGrid, coarser_factor
from qgis_misr.core.masks import detect_kinds
from qgis_misr.core.params import FrameInput, RasterInfo, RunParameters
from qgis_misr.core.validation import run_notes, validate_inputs
from tests.rasters import SAMPLE, product_masks, simulated_series

ENGINE = ("misr",)
ALL_OPTIONS = frozenset({"--bands", "--mask-kind", "--no-auto-mask", "--mask-dilation", "--mask-snow",
                         "--mask-dark-areas", "--band", "--align", "--ttf-steps"})


def info(path, name=None, nodata=None, bands=1) -> RasterInfo:
    """The RasterInfo of a file, as raster_info reads a layer (GDAL's grid)."""
    from osgeo import gdal
    dataset = gdal.Open(str(path))
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    width, height = dataset.RasterXSize, dataset.RasterYSize
    return RasterInfo(name or Path(path).stem, str(path), "", (x0, y0 + dy * height, x0 + dx * width, y0),
                      width, height, (abs(dx), abs(dy)), bands, crs_wkt=dataset.GetProjection(),
                      geotransform=tuple(dataset.GetGeoTransform()), nodata=nodata)


def sample_inputs(masks=None, kinds=None, count=4) -> list[FrameInput]:
    frames = sorted(SAMPLE.glob("frame_*.tif"))[:count]
    return [FrameInput(info(frame), info(masks[i]) if masks else None, (kinds or ["auto"] * count)[i])
            for i, frame in enumerate(frames)]


@pytest.mark.parametrize("kind, factor", [("scl", 1), ("scl", 2), ("qa_pixel", 1), ("fmask", 1)])
def test_the_plugin_detects_the_mask_kinds_the_engine_detects(tmp_path, kind, factor):
    from misr_engine.rasters.bands import open_band
    from misr_engine.rasters.masks import count_values, resolve_kinds
    masks, _ = product_masks(tmp_path, kind, factor)
    engine_kinds, _ = resolve_kinds(masks, ["auto"] * len(masks), [count_values(open_band(m)) for m in masks])
    plugin = detect_kinds(masks)
    assert [k for k, _ in plugin] == engine_kinds == [kind] * len(masks)
    binary = sorted(str(p) for p in SAMPLE.glob("mask_*.tif"))
    assert [k for k, _ in detect_kinds(binary)] == ["binary"] * 9


def test_coarser_masks_are_judged_as_the_engine_judges_them(tmp_path):
    from misr_engine.rasters.grid import Grid as EngineGrid
    frame = info(sorted(SAMPLE.glob("frame_*.tif"))[0])
    masks, _ = product_masks(tmp_path, "scl", 2)
    cases = [info(masks[0]).grid, frame.grid,
             PluginGrid(frame.grid.crs, (frame.grid.geotransform[0], 90.0, 0.0, frame.grid.geotransform[3], 0.0, -90.0),
                        46, 46),  # 3x, but short of the frame's extent
             PluginGrid(frame.grid.crs, (frame.grid.geotransform[0] - 45, 45.0, 0.0, frame.grid.geotransform[3], 0.0,
                                         -45.0), 95, 94)]  # 1.5x: not a whole multiple
    for case in cases:
        engine = EngineGrid(case.crs, case.geotransform, case.width, case.height).coarser_factor(
            EngineGrid(frame.grid.crs, frame.grid.geotransform, frame.width, frame.height))
        assert coarser_factor(case, frame.grid) == engine
    assert coarser_factor(cases[0], frame.grid) == 2


def test_a_20m_scl_beside_10m_frames_is_no_problem_but_a_note(tmp_path):
    masks, _ = product_masks(tmp_path, "scl", 2)
    frames = sample_inputs(masks)
    assert validate_inputs(frames) == []
    notes = run_notes(RunParameters(frames=frames))
    assert notes == ["Masks scl_01, scl_02, scl_03, scl_04: pixels 2x larger than the frame's: read onto the "
                     "frame's grid by nearest neighbour."]


def test_without_masks_the_note_names_the_frames_with_no_nodata_either():
    frames = sample_inputs()
    frames[0] = FrameInput(frames[0].frame.__class__(**{**frames[0].frame.__dict__, "nodata": 0.0}))
    notes = run_notes(RunParameters(frames=frames))
    assert any("frame_02, frame_03, frame_04" in n and "screens clouds and shadows automatically" in n
               for n in notes)
    assert not any("frame_01" in n for n in notes)
    off = run_notes(RunParameters(frames=frames, auto_mask=False))
    assert any("clouds and shadows will show" in n for n in off)
    assert run_notes(RunParameters(frames=sample_inputs(sorted(SAMPLE.glob("mask_*.tif"))))) == []


def test_band_lists_are_checked_against_every_frame():
    frames = sample_inputs()
    assert validate_inputs(frames, bands=(1, 2)) == ["Frame frame_01 has 1 band(s); band 2 does not exist.",
                                                      "Frame frame_02 has 1 band(s); band 2 does not exist.",
                                                      "Frame frame_03 has 1 band(s); band 2 does not exist.",
                                                      "Frame frame_04 has 1 band(s); band 2 does not exist."]
    assert any("chosen twice" in p for p in validate_inputs(frames, bands=(1, 1)))


def test_the_command_passes_the_options_only_when_asked_and_offered(tmp_path):
    masks, _ = product_masks(tmp_path, "scl")
    caps = EngineCapabilities(options=ALL_OPTIONS)
    plain = build_command(ENGINE, RunParameters(frames=sample_inputs(masks), output="sr.tif"), caps)
    assert "--mask-kind" not in plain and "--bands" not in plain and "--band" in plain
    chosen = RunParameters(frames=sample_inputs(masks, ["scl", "auto", "scl", "scl"]), output="sr.tif",
                           bands=(3, 2, 1), mask_dilation=1, mask_snow=True)
    argv = build_command(ENGINE, chosen, caps)
    assert argv[argv.index("--mask-kind") + 1:argv.index("--mask-kind") + 5] == ["scl", "auto", "scl", "scl"]
    assert argv[argv.index("--bands") + 1] == "3,2,1" and "--band" not in argv
    assert argv[argv.index("--mask-dilation") + 1] == "1" and "--mask-snow" in argv
    unmasked = build_command(ENGINE, RunParameters(frames=sample_inputs(), output="sr.tif", auto_mask=False), caps)
    assert "--no-auto-mask" in unmasked
    old = EngineCapabilities(options=frozenset({"--band", "--align"}))
    with pytest.raises(UnsupportedOption, match="--bands"):
        build_command(ENGINE, RunParameters(frames=sample_inputs(), output="sr.tif", bands=(1, 2)), old)
    with pytest.raises(UnsupportedOption, match="--mask-kind"):
        build_command(ENGINE, RunParameters(frames=sample_inputs(masks, ["scl"] * 4), output="sr.tif"), old)
    # an engine without automatic screening has nothing to turn off
    assert "--no-auto-mask" not in build_command(
        ENGINE, RunParameters(frames=sample_inputs(), output="sr.tif", auto_mask=False), old)


# -- inside QGIS ------------------------------------------------------------------------------------

@pytest.fixture()
def plugin(iface, processing_ready, project):
    import qgis_misr
    from qgis_misr import settings
    settings.set_configured_engine("")
    instance = qgis_misr.classFactory(iface)
    instance.initGui()
    yield instance
    instance.unload()


def add_layers(project, paths, prefix):
    from qgis.core import QgsRasterLayer
    layers = []
    for index, path in enumerate(paths, start=1):
        layer = QgsRasterLayer(str(path), f"{prefix}_{index:02d}", "gdal")
        assert layer.isValid(), path
        project.addMapLayer(layer)
        layers.append(layer)
    return layers


def test_the_dialog_shows_each_masks_kind_and_lets_it_be_changed(plugin, project, tmp_path):
    frames = add_layers(project, sorted(SAMPLE.glob("frame_*.tif"))[:4], "frame")
    masks = add_layers(project, product_masks(tmp_path, "scl", 2)[0][:4], "mask")
    dialog = plugin.show_dialog()
    dialog.set_frames(frames, masks)
    kinds = [dialog.table.cellWidget(row, 3) for row in range(4)]
    assert [k.currentText() for k in kinds] == ["Auto: Sentinel-2 SCL"] * 4
    assert not any("mask" in p.lower() for p in dialog.problems)
    assert any("2x larger" in note for note in dialog.notes)
    kinds[1].setCurrentIndex(kinds[1].findData("fmask"))
    assert [f.mask_kind for f in dialog.collect_parameters().frames] == ["auto", "fmask", "auto", "auto"]


def test_the_dialog_notes_the_automatic_screening_of_frames_without_masks(plugin, project):
    frames = add_layers(project, sorted(SAMPLE.glob("frame_*.tif"))[:4], "frame")
    dialog = plugin.show_dialog()
    dialog.set_frames(frames, [None] * 4)
    assert any("screens clouds and shadows automatically" in note for note in dialog.notes)
    dialog.mask_options.auto_check.setChecked(False)
    assert not dialog.collect_parameters().auto_mask
    assert any("will show in the result" in note for note in dialog.notes)


def test_the_band_choice_offers_one_band_all_or_a_list(plugin, project, tmp_path):
    frame_paths, _, _ = simulated_series(tmp_path / "rgb", count=3)
    frames = add_layers(project, frame_paths, "frame")
    dialog = plugin.show_dialog()
    dialog.set_frames(frames, [None] * 3)
    chooser = dialog.band_chooser
    assert (dialog.collect_parameters().band, dialog.collect_parameters().bands) == (1, ())
    chooser.choose("all")
    assert dialog.collect_parameters().bands == (1, 2, 3)
    chooser.choose([3, 2, 1])
    assert dialog.collect_parameters().bands == (3, 2, 1)
    assert not any("band" in p.lower() for p in dialog.problems)
    chooser.choose([1, 4])
    assert any("band 4 does not exist" in p for p in dialog.problems)


@pytest.mark.parametrize("names, expected", [(("B04", "B03", "B02"), (1, 2, 3)), (("B02", "B03", "B04"), (3, 2, 1)),
                                             (("nir", "swir", "x"), (1, 2, 3))])
def test_a_3_band_sr_is_rendered_in_true_colour_when_its_bands_are_known(qgis_app, tmp_path, names, expected):
    from osgeo import gdal
    from qgis.core import QgsMultiBandColorRenderer, QgsRasterLayer

    from qgis_misr.layers import style_sr_layer
    from tests.rasters import make_raster
    path = make_raster(tmp_path / "sr.tif", np.random.default_rng(1).random((3, 30, 30), np.float32) * 1000,
                       gdal.GDT_Float32)
    dataset = gdal.Open(str(path), gdal.GA_Update)
    for index, name in enumerate(names, start=1):
        dataset.GetRasterBand(index).SetDescription(name)
    dataset = None
    layer = QgsRasterLayer(str(path), "sr", "gdal")
    style_sr_layer(layer)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsMultiBandColorRenderer)
    assert (renderer.redBand(), renderer.greenBand(), renderer.blueBand()) == expected
    enhancement = renderer.redContrastEnhancement()
    assert 0 < enhancement.minimumValue() < enhancement.maximumValue() < 1000


@pytest.mark.slow
def test_sentinel2_bands_and_a_20m_scl_give_a_cloud_free_true_colour_sr_in_one_dialog_run(
        plugin, project, tmp_path, engine):
    """The analyst's case: three Sentinel-2 bands (B04, B03, B02) per date and the date's SCL at
    twice the pixel size; one dialog run gives a 3-band SR rendered in true colour, clouds out."""
    from osgeo import gdal
    from qgis.core import QgsMultiBandColorRenderer

    from .plugin_support import wait_for_task
    frame_paths, mask_paths, hr = simulated_series(tmp_path / "rgb", count=6)
    scl, _ = product_masks(tmp_path / "scl", "scl", 2, frames=frame_paths, masks=mask_paths)
    frames, masks = add_layers(project, frame_paths, "frame"), add_layers(project, scl, "scl")
    dialog = plugin.show_dialog()
    assert dialog.wait_for_engine()
    dialog.set_frames(frames, masks)
    dialog.band_chooser.choose("all")
    dialog.tile_spin.setValue(64)
    dialog.output_widget.setFilePath(str(tmp_path / "sr.tif"))
    dialog.device_combo.setCurrentIndex(dialog.device_combo.findData("cpu"))
    assert dialog.run_button.isEnabled(), dialog.problems
    task = dialog.run()
    assert wait_for_task(task, 600) and task.result.ok, task.error
    assert "--bands" in task.argv and "1,2,3" in task.argv
    sr_layer = next(layer for layer in project.mapLayers().values() if layer.customProperty("misr/role") == "sr")
    renderer = sr_layer.renderer()
    assert isinstance(renderer, QgsMultiBandColorRenderer)
    assert (renderer.redBand(), renderer.greenBand(), renderer.blueBand()) == (1, 2, 3)  # B04, B03, B02
    sr = gdal.Open(str(tmp_path / "sr.tif")).ReadAsArray()
    assert sr.shape == hr.shape
    for band in range(3):  # clouds are 2.5-5x the scene's level: none comes through
        assert np.nanmax(np.abs(sr[band] - hr[band])) < 1.5 * hr[band].mean(), band


def test_processing_takes_bands_mask_kind_and_screening_and_keeps_the_old_parameters(iface, processing_ready,
                                                                                    tmp_path):
    import qgis_misr
    from qgis.core import QgsProcessingException

    from .engine_stub import ANALYST_OPTIONS, fake_engine, writes_outputs
    from .test_plugin_processing import RecordingFeedback, _run
    plugin = qgis_misr.classFactory(iface)
    plugin.initProcessing()
    try:
        frames, masks, _ = simulated_series(tmp_path / "rgb", count=3)
        scl, _ = product_masks(tmp_path / "scl", "scl", frames=frames, masks=masks)
        engine = str(fake_engine(tmp_path / "new", run_body=writes_outputs(), options=ANALYST_OPTIONS))
        base = {"FRAMES": frames, "ENGINE": engine, "OUTPUT": str(tmp_path / "sr.tif")}

        def command(**parameters) -> list[str]:
            feedback = RecordingFeedback()
            _run({**base, **parameters}, feedback)
            return feedback.texts("command")[0].split()
        argv = command(BANDS="3,2,1", MASKS=scl, MASK_KIND=2, MASK_DILATION=1, MASK_SNOW=True)
        assert argv[argv.index("--bands") + 1] == "3,2,1" and "--band" not in argv
        assert argv[argv.index("--mask-kind") + 1] == "scl" and argv[argv.index("--mask-dilation") + 1] == "1"
        assert "--mask-snow" in argv
        assert "--no-auto-mask" in command(AUTO_MASK=False)
        old = command(BAND=2)  # the parameters of before: one band, masks detected by the engine
        assert old[old.index("--band") + 1] == "2" and "--bands" not in old and "--mask-kind" not in old
        every = command(BANDS="all")
        assert every[every.index("--bands") + 1] == "1,2,3"
        without = str(fake_engine(tmp_path / "old", run_body=writes_outputs()))
        with pytest.raises(QgsProcessingException, match="this engine has no --bands option"):
            _run({**base, "ENGINE": without, "BANDS": "all"})
    finally:
        plugin.unload()
