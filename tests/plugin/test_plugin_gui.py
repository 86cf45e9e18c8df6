"""The plugin inside a real (headless) QGIS: loading and unloading, the dialog's validation, a
run of the real engine on the sample through the dialog and its QgsTask, cancel, export, errors."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

pytest.importorskip("qgis.core")

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsRasterLayer,
    QgsSingleBandGrayRenderer,
    QgsSingleBandPseudoColorRenderer,
)

import qgis_misr  # noqa: E402
from qgis_misr.controller import RunController  # noqa: E402
from qgis_misr.core.engine import EngineLocation  # noqa: E402
from qgis_misr.core.params import ALIGN_LABEL, FrameInput, RunParameters  # noqa: E402
from qgis_misr.layers import ROLE, raster_info, renderer_min_max  # noqa: E402
from .engine_stub import fake_engine  # noqa: E402
from .plugin_support import crop_sample, load_sample, off_grid_sample, wait_for, wait_for_task  # noqa: E402


@pytest.fixture()
def plugin(iface, processing_ready, project):
    from qgis_misr import settings
    settings.set_configured_engine("")  # auto-detect: the repository's .venv (or MISR_ENGINE)
    settings.set_value("align", False)  # a test that ticks it must not change the others
    instance = qgis_misr.classFactory(iface)
    instance.initGui()
    yield instance
    instance.unload()
    settings.set_value("align", False)


def _group_layers(group):
    return [node.layer() for node in group.findLayers()]


def test_plugin_loads_and_unloads_cleanly(iface, processing_ready):
    registry = QgsApplication.processingRegistry()
    plugin = qgis_misr.classFactory(iface)
    plugin.initGui()
    assert len(iface.toolbar) == 1 and iface.toolbar[0].icon().isNull() is False
    assert [name for name, _action in iface.raster_menu] == ["&MISR Super-Resolution"]
    assert len(iface.layer_type_actions) == 1
    assert registry.providerById("misr") is not None
    assert registry.algorithmById("misr:superresolve") is not None
    plugin.unload()
    assert iface.toolbar == [] and iface.raster_menu == [] and iface.layer_type_actions == []
    assert registry.providerById("misr") is None
    # and it can be loaded again (QGIS does this when a plugin is reloaded)
    plugin = qgis_misr.classFactory(iface)
    plugin.initGui()
    assert registry.algorithmById("misr:superresolve") is not None
    plugin.unload()


def test_dialog_opens_with_frames_and_masks_paired_by_name(plugin, project, sample_frames):
    frames, masks = load_sample(4)
    dialog = plugin.show_dialog()
    dialog.set_frames(frames)
    params = dialog.collect_parameters()
    assert [f.frame.name for f in params.frames] == ["frame_01", "frame_02", "frame_03", "frame_04"]
    assert [f.mask.name for f in params.frames] == ["mask_01", "mask_02", "mask_03", "mask_04"]
    assert params.output == "" and params.uncertainty == ""  # temporary by default
    assert dialog.output_widget.lineEdit().placeholderText() == "[Save to temporary file]"
    grid_problems = [p for p in dialog.problems if "differs" in p]
    assert grid_problems == []
    dialog.move_selected(1)  # no selection: nothing moves
    dialog.table.selectRow(0)
    dialog.move_selected(1)
    assert [f.frame.name for f in dialog.collect_parameters().frames][:2] == ["frame_02", "frame_01"]
    dialog.sort_by_date()  # no dates: by name
    assert [f.frame.name for f in dialog.collect_parameters().frames][:2] == ["frame_01", "frame_02"]


def test_dates_in_layer_names_are_shown_and_sortable(plugin, project, tmp_path, make_raster):
    later = QgsRasterLayer(make_raster(tmp_path / "a.tif"), "S2_2024-06-02_B04", "gdal")
    earlier = QgsRasterLayer(make_raster(tmp_path / "b.tif"), "S2_20240517_B04", "gdal")
    project.addMapLayers([later, earlier])
    dialog = plugin.show_dialog()
    dialog.set_frames([later, earlier], masks=[None, None])
    dialog.sort_by_date()
    assert [dialog.table.item(row, 1).text() for row in range(2)] == ["2024-05-17", "2024-06-02"]
    assert " 2024-05-17..2024-06-02 (2 frames) " in dialog.collect_parameters().run_name


def test_dialog_lists_mismatched_layers_and_keeps_run_disabled(plugin, project, tmp_path, make_raster):
    good_a = make_raster(tmp_path / "a.tif")
    good_b = make_raster(tmp_path / "b.tif")
    coarse = make_raster(tmp_path / "coarse.tif", width=15, height=10, pixel=60.0)
    other_crs = make_raster(tmp_path / "utm33.tif", epsg=32633)
    shifted_mask = make_raster(tmp_path / "mask_a.tif", origin=(500015.0, 4000000.0), value=1)  # half a pixel
    layers = [QgsRasterLayer(path, os.path.splitext(os.path.basename(path))[0], "gdal")
              for path in (good_a, good_b, coarse, other_crs, shifted_mask)]
    assert all(layer.isValid() for layer in layers)
    project.addMapLayers(layers)
    a, b, coarse_layer, crs_layer, mask = layers
    dialog = plugin.show_dialog()
    dialog.set_frames([a, b, coarse_layer, crs_layer], masks=[mask, None, None, None])
    text = dialog.problems_label.text()
    assert "Frame coarse: size 15x10 differs from 30x20" in text
    assert "Frame coarse: size 15x10 differs from 30x20; pixel size 60 x 60 differs from 30 x 30 (frame a)" in text
    assert f'Tick "{ALIGN_LABEL}" to resample it.' in text
    assert "Frame utm33: CRS EPSG:32633 differs from EPSG:32618" in text
    assert "Mask mask_a: extent" in text
    assert "Choose a mask for every frame or for none" in text
    assert dialog.problems_label.isVisible() or not dialog.isVisible()
    assert not dialog.run_button.isEnabled()
    assert dialog.run() is None  # refuses to start
    # the same check in the pure-Python module, from the layers' grids
    from qgis_misr.core.validation import validate_inputs
    problems = validate_inputs([FrameInput(raster_info(a)), FrameInput(raster_info(coarse_layer))])
    assert any("pixel size" in p for p in problems)
    # a consistent choice clears the grid problems
    dialog.set_frames([a, b], masks=[None, None])
    assert not [p for p in dialog.problems if "differs" in p or "mask" in p.lower()]


def test_dialog_offers_the_engines_models_with_its_labels_and_limits(plugin, project, tmp_path, make_raster):
    """Only the models `misr models --json` lists with weights (no DeepSUM here), under the
    engine's labels; fine-tuning only for a fine-tunable model; the engine's minimum tile size."""
    layers = [QgsRasterLayer(make_raster(tmp_path / f"{name}.tif"), name, "gdal") for name in ("a", "b", "c")]
    project.addMapLayers(layers)
    dialog = plugin.show_dialog()
    dialog.engine_widget.setFilePath(str(fake_engine(tmp_path / "engine")))
    dialog.refresh_engine()
    assert dialog.wait_for_engine(60), "the stand-in engine did not answer"
    dialog.set_frames(layers, masks=[None, None, None])
    dialog.tile_spin.setValue(0)  # the engine's default (the last run's size is remembered)
    combo = dialog.model_combo
    assert [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())] == [
        ("PIUnet", "piunet"), ("FixedNet", "fixednet")]
    assert combo.currentData() == "piunet" and dialog.ttf_check.isEnabled()
    dialog.ttf_check.setChecked(True)
    combo.setCurrentIndex(combo.findData("fixednet"))
    assert not dialog.ttf_check.isEnabled() and not dialog.ttf_check.isChecked()
    assert dialog.ttf_check.toolTip() == "FixedNet is not fine-tunable"
    params = dialog.collect_parameters()
    assert params.model == "fixednet" and params.run_name.startswith("MISR FixedNet a..c (3 frames)")
    assert dialog.problems == [] and dialog.run_button.isEnabled()
    dialog.tile_spin.setValue(20)
    assert dialog.problems == ["Tile size 20: must be at least 24 pixels (or 0 for the engine's default)."]
    assert "at least 24 px" in dialog.tile_spin.toolTip()
    dialog.engine_widget.setFilePath("")


def _run_dialog(plugin, frames, tmp_path, tile_size=48, **outputs):
    dialog = plugin.show_dialog()
    assert dialog.wait_for_engine(180), "the engine probe did not answer"
    dialog.set_frames(frames)
    dialog.tile_spin.setValue(tile_size)
    for name, widget in (("output", dialog.output_widget), ("uncertainty", dialog.uncertainty_widget)):
        if name in outputs:
            widget.setFilePath(str(outputs[name]))
    dialog.device_combo.setCurrentIndex(dialog.device_combo.findData("cpu"))
    assert dialog.run_button.isEnabled(), dialog.problems
    task = dialog.run()
    assert task is not None, dialog.problems_label.text()
    return dialog, task


@pytest.mark.slow
def test_dialog_runs_the_engine_and_adds_the_styled_layers_in_a_group(plugin, iface, project, tmp_path,
                                                                      engine, sample_frames):
    frames, _masks = load_sample(4, folder=crop_sample(tmp_path / "sample", 4))
    out = tmp_path / "out"
    out.mkdir()
    dialog, task = _run_dialog(plugin, frames, tmp_path, output=out / "sr.tif", uncertainty=out / "unc.tif")
    assert wait_for_task(task, 300), "the engine did not finish"
    assert task.result is not None and task.result.ok, task.error
    run = task.prepared.params.run_name
    group = project.layerTreeRoot().findGroup(run)
    assert group is not None, [c.name() for c in project.layerTreeRoot().children()]
    uncertainty, sr = _group_layers(group)
    assert sr.customProperty(ROLE) == "sr" and uncertainty.customProperty(ROLE) == "uncertainty"
    assert os.path.samefile(sr.source(), out / "sr.tif")
    # SR: grey stretch with the input layer's min/max
    assert isinstance(sr.renderer(), QgsSingleBandGrayRenderer)
    enhancement = sr.renderer().contrastEnhancement()
    assert (enhancement.minimumValue(), enhancement.maximumValue()) == pytest.approx(renderer_min_max(frames[0]))
    # uncertainty: continuous colour ramp over its own range, semi-transparent, above the SR
    renderer = uncertainty.renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer)
    assert renderer.opacity() == pytest.approx(0.6)
    assert renderer.classificationMax() > renderer.classificationMin() >= 0
    items = renderer.shader().rasterShaderFunction().colorRampItemList()
    assert len(items) >= 2 and items[0].label and items[-1].value == pytest.approx(renderer.classificationMax())
    # grid: same CRS and extent, pixel size / 3
    lr = frames[0]
    assert sr.crs() == lr.crs() and sr.extent() == lr.extent()
    assert sr.rasterUnitsPerPixelX() == pytest.approx(lr.rasterUnitsPerPixelX() / 3)
    assert (sr.width(), sr.height()) == (3 * lr.width(), 3 * lr.height())
    # the message bar says which device ran
    messages = [str(args) for args, _kw in iface.messageBar().messages]
    assert any("done on cpu" in m for m in messages), messages
    assert dialog.export_button.isEnabled()

    # Export as Cloud-Optimized GeoTIFF, from the dialog and from the layer's context menu
    from osgeo import gdal
    written = dialog.export_to(str(tmp_path / "cog"))
    for path in written.values():
        info = gdal.Info(path, format="json")
        assert info["metadata"]["IMAGE_STRUCTURE"].get("LAYOUT") == "COG", path
        assert info["size"] == [sr.width(), sr.height()]
    assert any(action is plugin.export_action and layer_id == sr.id()
               for action, layer_id in iface.layer_actions)
    iface.setActiveLayer(uncertainty)
    again = plugin.export_active_layer(folder=str(tmp_path / "cog2"))
    assert sorted(os.path.basename(p) for p in again.values()) == sorted(
        os.path.basename(p) for p in written.values())


@pytest.mark.slow
def test_off_grid_frame_needs_the_align_option_then_runs_and_the_option_is_remembered(
        plugin, project, tmp_path, engine, sample_frames):
    """frame_02 (and mask_02) of the sample on another grid: blocked with a hint, unless the
    align box is ticked; then the engine resamples it, and the next dialog has the box ticked."""
    from qgis_misr.gui.dialog import MisrDialog
    frames, _masks = load_sample(4, folder=off_grid_sample(tmp_path / "sample", 4))
    dialog = plugin.show_dialog()
    dialog.set_frames(frames)
    assert not dialog.align_check.isChecked()
    [problem] = [p for p in dialog.problems if "frame_02" in p]
    assert problem.startswith("Frame frame_02: size 44x44 differs from 48x48; pixel size 33 x 33 "
                              "differs from 30 x 30; extent")
    assert problem.endswith(f'(frame frame_01). Tick "{ALIGN_LABEL}" to resample it.')
    assert not dialog.run_button.isEnabled() and dialog.notes == []
    dialog.align_check.setChecked(True)
    assert not [p for p in dialog.problems if "_02" in p]
    assert [note.split(":")[0] for note in dialog.notes] == ["Frame frame_02", "Mask mask_02"]
    assert dialog.notes[0].endswith("will be resampled onto the first frame's grid (bilinear).")
    out = tmp_path / "out"
    out.mkdir()
    dialog, task = _run_dialog(plugin, frames, tmp_path, output=out / "sr.tif", uncertainty=out / "unc.tif")
    assert task.argv.count("--align") == 1
    assert wait_for_task(task, 300), "the engine did not finish"
    assert task.result is not None and task.result.ok, task.error
    assert any("resampled onto the grid of" in w for w in task.result.warnings), task.result.warnings
    sr = QgsRasterLayer(str(out / "sr.tif"), "sr", "gdal")
    assert sr.crs() == frames[0].crs() and sr.extent() == frames[0].extent()
    assert (sr.width(), sr.height()) == (3 * frames[0].width(), 3 * frames[0].height())
    again = MisrDialog(plugin.controller, project)  # the choice was saved with the run
    try:
        assert again.align_check.isChecked()
    finally:
        again.disconnect_project()
        again.deleteLater()


@pytest.mark.slow
def test_temporary_outputs_by_default(plugin, project, tmp_path, engine, sample_frames):
    frames, _masks = load_sample(3, folder=crop_sample(tmp_path / "sample", 3))
    dialog, task = _run_dialog(plugin, frames, tmp_path)
    assert wait_for_task(task, 300)
    assert task.result.ok, task.error
    params = task.prepared.params
    assert task.prepared.plan.temporary and os.path.isfile(params.output) and os.path.isfile(params.uncertainty)
    from qgis.core import QgsProcessingUtils
    assert os.path.commonpath([params.output, QgsProcessingUtils.tempFolder()]) == QgsProcessingUtils.tempFolder()


@pytest.mark.slow
def test_cancel_stops_the_engine_and_leaves_no_files(plugin, project, tmp_path, engine, sample_frames):
    frames, _masks = load_sample(9, folder=crop_sample(tmp_path / "sample", 9))
    out = tmp_path / "out"
    out.mkdir()
    dialog, task = _run_dialog(plugin, frames, tmp_path, tile_size=16, output=out / "sr.tif",
                               uncertainty=out / "unc.tif")
    assert wait_for(lambda: task.progress() > 0 or task.result is not None, 240), "no progress"
    dialog.cancel_run()
    assert wait_for_task(task, 120)
    assert task.result is not None and task.result.canceled, task.error
    # the engine stopped on SIGTERM by itself (status 130), it was not killed
    assert task.result.returncode == 130 and not task.result.killed
    assert os.listdir(out) == []
    assert project.layerTreeRoot().findGroup(task.prepared.params.run_name) is None
    assert dialog.status_label.text() == "Canceled: the engine was stopped; no files were left behind."


def test_engine_errors_reach_the_message_bar_and_the_log(qgis_app, iface, project, tmp_path, make_raster):
    """An engine that fails (stand-in script: the real engine's error paths are in its own
    tests) gives a clear message bar entry and a MISR log entry, and no layers."""
    script = tmp_path / "failing_misr.py"
    script.write_text(textwrap.dedent("""
        import json, sys
        print(json.dumps({"event": "error", "message": "frames a.tif and b.tif have different CRS"}), flush=True)
        print("misr: error: frames a.tif and b.tif have different CRS", file=sys.stderr)
        sys.exit(2)
    """))
    a, b = make_raster(tmp_path / "a.tif"), make_raster(tmp_path / "b.tif")
    layers = [QgsRasterLayer(p, n, "gdal") for p, n in ((a, "a"), (b, "b"))]
    params = RunParameters(frames=[FrameInput(raster_info(layer)) for layer in layers],
                           output=str(tmp_path / "sr.tif"), uncertainty=str(tmp_path / "u.tif"),
                           run_name="failing run")
    logged = []
    log = QgsApplication.messageLog()
    log.messageReceived.connect(lambda message, tag, level: logged.append((tag, message)))
    controller = RunController(iface, project)
    task = controller.start(params, EngineLocation((sys.executable, str(script)), "test"))
    assert wait_for_task(task, 60)
    assert task.result.returncode == 2
    assert task.error == "frames a.tif and b.tif have different CRS"
    bar = [str(args) for args, _kw in iface.messageBar().messages]
    assert any("Super-resolution failed: frames a.tif and b.tif have different CRS" in m for m in bar)
    assert any(tag == "MISR" and "different CRS" in message for tag, message in logged)
    assert not (tmp_path / "sr.tif").exists()
    assert project.layerTreeRoot().findGroup("failing run") is None


@pytest.mark.slow
def test_engine_itself_removes_its_files_on_sigterm(engine, tmp_path, sample_frames):
    """Without the plugin's own clean-up: the engine, sent SIGTERM mid-run, exits with 130 and
    leaves nothing in the output folder (docs/cli-contract.md)."""
    import signal
    import time
    from qgis_misr.core.runner import EngineProcess
    folder = crop_sample(tmp_path / "sample", 9)
    out = tmp_path / "out"
    out.mkdir()
    argv = list(engine.argv) + ["super-resolve", "--frames"] + \
        [str(folder / f"frame_{i:02d}.tif") for i in range(1, 10)] + \
        ["--output", str(out / "sr.tif"), "--uncertainty", str(out / "unc.tif"),
         "--tile-size", "16", "--device", "cpu", "--progress", "json"]
    process = EngineProcess(argv)
    process.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        event = process.events.get(timeout=deadline - time.monotonic())
        if event.get("event") == "progress":
            break
    process.process.send_signal(signal.SIGTERM)
    assert process.process.wait(timeout=60) == 130
    assert os.listdir(out) == []
