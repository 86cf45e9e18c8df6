"""The dialog as analysts meet it, in a headless QGIS with a stand-in engine: it fits a
1366x768 screen, ticks only the layers that can be frames, has no default button, keeps its
problems list from covering controls, and tells the truth about cancels, results, names and
exports; fine-tuning and single frames follow the engine's limits."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("qgis.core")

from osgeo import gdal  # noqa: E402
from qgis.core import Qgis, QgsApplication, QgsLayerTreeGroup, QgsRasterLayer, QgsTask  # noqa: E402
from qgis.PyQt.QtCore import QPoint, QRect, Qt  # noqa: E402
from qgis.PyQt.QtTest import QTest  # noqa: E402
from qgis.PyQt.QtWidgets import QDialogButtonBox, QLineEdit, QPushButton  # noqa: E402

import qgis_misr  # noqa: E402
from qgis_misr import settings  # noqa: E402
from qgis_misr.core.validation import ONE_FRAME_NOTE, screening_notes  # noqa: E402
from .engine_stub import fake_engine, sleeps_after_start, writes_rasters  # noqa: E402
from .plugin_support import wait_for, wait_for_task  # noqa: E402

SCREEN_1366x768 = QRect(0, 0, 1366, 768 - 40)
"""A 1366x768 screen less a 40-pixel desktop panel: the screen the issue was found on."""


@pytest.fixture()
def stub_plugin(iface, processing_ready, project, tmp_path):
    """The plugin with a stand-in engine that writes real rasters; returns (plugin, engine
    folder). Its settings are reset afterwards."""
    engine = fake_engine(tmp_path / "engine", run_body=writes_rasters())
    settings.set_configured_engine(str(engine))
    settings.set_value("align", False)
    settings.set_value("tile_size", 0)
    plugin = qgis_misr.classFactory(iface)
    plugin.initGui()
    yield plugin
    plugin.unload()
    settings.set_configured_engine("")
    from qgis_misr.core import userfiles
    userfiles.write_engine_path("")


def _layers(project, tmp_path, make_raster, names, **grid):
    layers = [QgsRasterLayer(make_raster(tmp_path / f"{name}.tif", **grid), name, "gdal") for name in names]
    assert all(layer.isValid() for layer in layers)
    project.addMapLayers(layers)
    return layers


def _open(plugin):
    dialog = plugin.show_dialog()
    assert dialog.wait_for_engine(60), "the stand-in engine did not answer"
    return dialog


def _rect_in(widget, ancestor) -> QRect:
    return QRect(widget.mapTo(ancestor, QPoint(0, 0)), widget.size())


def _close_button(dialog) -> QPushButton:
    return dialog.button_box.button(QDialogButtonBox.StandardButton.Close)


# -- layout ------------------------------------------------------------------------------------------
def test_the_dialog_fits_a_1366x768_screen_with_run_and_close_visible(stub_plugin, project, tmp_path,
                                                                      make_raster):
    _layers(project, tmp_path, make_raster, [f"frame_{i:02d}" for i in range(1, 13)])
    dialog = _open(stub_plugin)
    dialog.fit_to_screen(SCREEN_1366x768)
    for section in (dialog.options_section, dialog.engine_section, dialog.setup_box):
        section.setCollapsed(False)  # the worst case: everything open
    dialog.setup_panel.log_box.setCollapsed(False)
    wait_for(lambda: False, 0.3)
    assert dialog.width() <= 1366 and dialog.height() <= SCREEN_1366x768.height() - 60
    assert dialog.minimumSizeHint().height() <= dialog.height()
    for button in (dialog.run_button, _close_button(dialog), dialog.cancel_button, dialog.export_button):
        assert button.isVisible() and dialog.rect().contains(_rect_in(button, dialog)), button.text()
    assert dialog.table.height() >= 100  # the frames stay usable; the rest scrolls
    assert dialog.scroll.verticalScrollBar().maximum() > 0


def test_a_long_problem_list_never_covers_the_controls(stub_plugin, project, tmp_path, make_raster):
    layers = _layers(project, tmp_path, make_raster, ["a"])
    layers += _layers(project, tmp_path, make_raster, [f"odd_{i:02d}" for i in range(20)], pixel=60.0)
    dialog = _open(stub_plugin)
    dialog.fit_to_screen(SCREEN_1366x768)
    dialog.set_frames(layers, masks=[None] * len(layers))
    wait_for(lambda: False, 0.3)
    assert len(dialog.problems) >= 20
    assert dialog.messages.isVisible() and dialog.messages.height() <= 110
    areas = {"sections": _rect_in(dialog.scroll, dialog), "problems": _rect_in(dialog.messages, dialog),
             "status": _rect_in(dialog.status_label, dialog), "buttons": _rect_in(dialog.button_box, dialog)}
    names = list(areas)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not areas[first].intersects(areas[second]), (first, second)
    content = dialog.scroll.widget()
    assert not _rect_in(dialog.table, content).intersects(_rect_in(dialog.up_button, content))
    assert dialog.rect().contains(_rect_in(dialog.run_button, dialog))


def test_enter_in_a_field_does_not_reorder_frames_or_start_anything(stub_plugin, project, tmp_path, make_raster):
    _layers(project, tmp_path, make_raster, ["a", "b", "c"])
    dialog = _open(stub_plugin)
    order = [row.layer_id for row in dialog.rows]
    dialog.table.selectRow(1)  # "Move up" would move it
    field = dialog.engine_widget.lineEdit()
    field.setFocus()
    QTest.keyClick(field, Qt.Key.Key_Return)
    QTest.keyClick(dialog.tile_spin, Qt.Key.Key_Enter)
    wait_for(lambda: False, 0.2)
    assert [row.layer_id for row in dialog.rows] == order
    assert dialog.task is None and dialog.isVisible()
    assert [b.text() for b in dialog.findChildren(QPushButton) if b.isDefault() or b.autoDefault()] == []


# -- which layers are frames -------------------------------------------------------------------------------
def test_only_local_layers_on_the_first_frames_grid_are_preticked(stub_plugin, project, tmp_path, make_raster):
    frames = _layers(project, tmp_path, make_raster, ["s2_a", "s2_b", "s2_c"])
    mosaic = str(tmp_path / "mosaic.vrt")
    gdal.BuildVRT(mosaic, [frames[0].source()], xRes=60, yRes=60).FlushCache()
    others = [QgsRasterLayer(mosaic, "a_mosaic", "gdal"),
              QgsRasterLayer("type=xyz&url=https://tile.openstreetmap.org/%7Bz%7D/%7Bx%7D/%7By%7D.png"
                             "&zmax=19&zmin=0", "OpenStreetMap", "wms")]
    assert all(layer.isValid() for layer in others)
    project.addMapLayers(others)
    dialog = _open(stub_plugin)
    ticked = [dialog._layer(row.layer_id).name() for row in dialog.rows if row.checked]
    assert ticked == ["s2_a", "s2_b", "s2_c"]
    assert {dialog._layer(row.layer_id).name() for row in dialog.rows} >= {"a_mosaic", "OpenStreetMap"}
    assert dialog.problems == [] and dialog.run_button.isEnabled()
    # layers added later: ticked only when they are on the first ticked frame's grid
    later = _layers(project, tmp_path, make_raster, ["s2_d"])
    coarse = _layers(project, tmp_path, make_raster, ["s2_e_60m"], pixel=60.0)
    rows = {dialog._layer(row.layer_id).name(): row.checked for row in dialog.rows}
    assert rows[later[0].name()] and not rows[coarse[0].name()]


# -- engine limits: one frame, fine-tuning ---------------------------------------------------------------
def test_one_frame_is_allowed_with_a_note(stub_plugin, project, tmp_path, make_raster):
    (single,) = _layers(project, tmp_path, make_raster, ["only"])
    dialog = _open(stub_plugin)
    dialog.set_frames([single], masks=[None])
    assert dialog.problems == [] and dialog.run_button.isEnabled()
    screening = screening_notes(dialog.collect_parameters())  # too few frames to screen clouds (issue 17)
    assert dialog.notes == [ONE_FRAME_NOTE] + screening and screening and dialog.messages.isVisibleTo(dialog)


def test_fine_tuning_is_disabled_below_the_engines_minimum_frames_with_the_reason(
        stub_plugin, project, tmp_path, make_raster):
    layers = _layers(project, tmp_path, make_raster, ["a", "b", "c"])
    dialog = _open(stub_plugin)
    dialog.set_frames(layers[:2], masks=[None, None])
    reason = "Test-time fine-tuning needs at least 3 frames (each is predicted from the others); 2 chosen."
    assert not dialog.ttf_check.isEnabled() and not dialog.ttf_check.isChecked()
    assert dialog.ttf_note.text() == reason and dialog.ttf_check.toolTip() == reason
    dialog.set_frames(layers, masks=[None] * 3)
    assert dialog.ttf_check.isEnabled() and dialog.ttf_note.text() == ""
    dialog.ttf_check.setChecked(True)
    assert dialog.collect_parameters().ttf_enabled and dialog.ttf_steps.isEnabled()
    dialog.set_frames(layers[:2], masks=[None, None])  # unticking a frame unticks fine-tuning
    assert not dialog.ttf_check.isChecked() and not dialog.collect_parameters().ttf_enabled


def test_the_weights_list_offers_the_shipped_weights_adapted_files_and_other_files(
        stub_plugin, project, tmp_path, make_raster):
    layers = _layers(project, tmp_path, make_raster, ["a", "b", "c"])
    settings.set_value("weights_files", "")
    dialog = _open(stub_plugin)
    dialog.set_frames(layers, masks=[None] * 3)
    items = [dialog.weights_combo.itemText(i) for i in range(dialog.weights_combo.count())]
    assert items == ["supervised", "self-supervised (no HR)", "Other file..."]
    assert dialog.collect_parameters().weights == ""  # the default: no --weights
    dialog.weights_combo.setCurrentIndex(1)
    assert dialog.collect_parameters().weights == "/w/piunet_ssl.safetensors"
    adapted = tmp_path / "adapted.safetensors"
    adapted.write_bytes(b"")
    dialog.add_weights_file(str(adapted))  # what choosing it in 'Other file...' does
    assert dialog.weights_combo.currentText() == "adapted.safetensors"
    assert dialog.collect_parameters().weights == str(adapted) and dialog.problems == []
    dialog.model_combo.setCurrentIndex(dialog.model_combo.findData("fixednet"))  # no shipped options
    assert dialog.weights_combo.itemText(0) == "the model's default"
    assert dialog.weights_combo.findText("adapted.safetensors") >= 0  # files stay on offer
    adapted.unlink()
    dialog._apply_weights()
    assert dialog.weights_combo.findText("adapted.safetensors") < 0  # a deleted file is not offered
    settings.set_value("weights_files", "")


def test_the_kernels_file_is_passed_only_with_fine_tuning(stub_plugin, project, tmp_path, make_raster):
    layers = _layers(project, tmp_path, make_raster, ["a", "b", "c"])
    dialog = _open(stub_plugin)
    dialog.set_frames(layers, masks=[None] * 3)
    assert not dialog.kernels_widget.isEnabled()
    dialog.ttf_check.setChecked(True)
    assert dialog.kernels_widget.isEnabled()
    dialog.kernels_widget.setFilePath(str(tmp_path / "kernels.json"))
    params = dialog.collect_parameters()
    assert params.ttf_enabled and params.kernels_out == str(tmp_path / "kernels.json") and dialog.problems == []


def test_the_sensor_mtf_follows_the_engine_and_is_passed_only_when_stated(stub_plugin, project, tmp_path,
                                                                        make_raster):
    layers = _layers(project, tmp_path, make_raster, ["a", "b", "c"])
    dialog = _open(stub_plugin)
    dialog.set_frames(layers, masks=[None] * 3)
    edit = dialog.mtf_edit
    assert edit.isEnabled() and edit.text() == "" and edit.placeholderText().startswith("engine default (0.29);")
    assert "Between 0.02 and 0.6" in edit.toolTip()  # the stand-in's range
    assert dialog.collect_parameters().sensor_mtf == () and dialog.problems == []
    edit.setText("0.15")
    assert dialog.collect_parameters().sensor_mtf == (0.15,) and dialog.problems == []
    edit.setText("0.15, 0.2")  # two values for the one band chosen
    assert dialog.problems == [("Sensor MTF: 2 values for 1 band; give one value for every band (0.28) or one "
                                "per band, in band order (0.28, 0.26, 0.25).")]
    assert not dialog.run_button.isEnabled()
    edit.setText("0.15, high")
    assert dialog.problems == [("Sensor MTF '0.15, high': give one value for every band (0.28) or one per band, "
                                "in band order (0.28, 0.26, 0.25).")]
    older = fake_engine(tmp_path / "older", options="[--ttf-steps N] [--align] [--tile-size PX]")
    dialog.engine_widget.setFilePath(str(older))
    dialog.refresh_engine(force=True)
    assert dialog.wait_for_engine(60)
    assert not edit.isEnabled() and edit.text() == "" and "no --sensor-mtf option" in edit.toolTip()
    assert dialog.collect_parameters().sensor_mtf == ()


def test_the_surface_shown_lists_the_ticked_frames_and_passes_the_one_chosen(stub_plugin, project, tmp_path,
                                                                           make_raster):
    layers = _layers(project, tmp_path, make_raster, ["a", "c", "d"])
    dialog = _open(stub_plugin)
    dialog.set_frames(layers, masks=[None] * 3)
    combo = dialog.state_combo
    assert [combo.itemText(i) for i in range(combo.count())][0] == "Mean of the dates"
    assert [combo.itemData(i) for i in range(1, combo.count())] == [layer.id() for layer in layers]
    assert dialog.collect_parameters().reference_frame == ""
    combo.setCurrentIndex(combo.findData(layers[1].id()))
    assert os.path.samefile(dialog.collect_parameters().reference_frame, layers[1].source())
    assert dialog.problems == []
    dialog.set_frames([layers[0], layers[2]], masks=[None] * 2)  # the date shown unticked: back to the mean
    assert combo.count() == 3 and combo.currentData() == "" and dialog.collect_parameters().reference_frame == ""
    dialog.set_frames(layers, masks=[None] * 3)
    combo.setCurrentIndex(combo.findData(layers[2].id()))
    dialog.set_frames(layers, masks=[None] * 3)  # still ticked: kept
    assert combo.currentData() == layers[2].id()


def test_noisy_frames_are_left_out_unless_the_box_is_ticked(stub_plugin, project, tmp_path, make_raster):
    dialog = _open(stub_plugin)
    dialog.set_frames(_layers(project, tmp_path, make_raster, ["a", "c", "d"]), masks=[None] * 3)
    box = dialog.keep_noisy_check
    assert box.text() == "Keep frames far noisier than the others" and "5 times as noisy" in box.toolTip()
    assert not box.isChecked() and dialog.collect_parameters().keep_noisy_frames is False
    box.setChecked(True)
    assert dialog.collect_parameters().keep_noisy_frames is True and dialog.problems == []


# -- running: names, messages, cancel, export -----------------------------------------------------------
def _run(dialog):
    assert dialog.run_button.isEnabled(), dialog.problems
    task = dialog.run()
    assert task is not None, dialog.problems_label.text()
    assert wait_for_task(task, 60), "the stand-in engine did not finish"
    return task


def _messages(iface):
    return [(args[1], kwargs.get("level")) for args, kwargs in iface.messageBar().messages]


def test_runs_are_named_uniquely_by_the_frames_used_and_the_message_tells_the_truth(
        stub_plugin, iface, project, tmp_path, make_raster):
    layers = _layers(project, tmp_path, make_raster, ["a", "b", "c"])
    stub = fake_engine(tmp_path / "engine2", run_body=writes_rasters(frames_used=2))
    dialog = _open(stub_plugin)
    dialog.engine_widget.setFilePath(str(stub))
    dialog.refresh_engine(force=True)
    assert dialog.wait_for_engine(60)
    dialog.set_frames(layers, masks=[None] * 3)
    out = tmp_path / "out"
    out.mkdir()
    dialog.output_widget.setFilePath(str(out / "sr.tif"))
    dialog.uncertainty_widget.setFilePath(str(out / "unc.tif"))
    first = _run(dialog)
    second = _run(dialog)  # within the same second, often
    groups = [node.name() for node in project.layerTreeRoot().children() if isinstance(node, QgsLayerTreeGroup)]
    assert len(groups) == len(set(groups)) == 2
    for name in groups:
        assert "(2 of 3 frames)" in name, name  # the engine's start event said 2
    assert first.context["layers"][0].name() in groups and second.context["layers"][0].name() in groups
    text, level = _messages(iface)[-1]
    assert f"Saved the SR to {out / 'sr.tif'} and the uncertainty to {out / 'unc.tif'}." in text
    assert "temporary" not in text and level == Qgis.MessageLevel.Success
    # the uncertainty alone temporary: said so, and only that
    dialog.uncertainty_widget.setFilePath("")
    _run(dialog)
    text, _level = _messages(iface)[-1]
    assert text.endswith(f"Saved the SR to {out / 'sr.tif'}. The uncertainty is a temporary file: use Export to keep it.")


def test_a_cancel_is_reported_as_canceled_at_info_level_and_disables_export(
        stub_plugin, iface, project, tmp_path, make_raster):
    layers = _layers(project, tmp_path, make_raster, ["a", "b", "c"])
    dialog = _open(stub_plugin)
    dialog.set_frames(layers, masks=[None] * 3)
    _run(dialog)
    assert dialog.export_button.isEnabled()  # a finished run can be exported
    slow = fake_engine(tmp_path / "slow", run_body=sleeps_after_start())
    dialog.engine_widget.setFilePath(str(slow))
    dialog.refresh_engine(force=True)
    assert dialog.wait_for_engine(60)
    logged = []
    QgsApplication.messageLog().messageReceived.connect(
        lambda message, tag, level: logged.append((tag, message, level)))
    ended = []
    stub_plugin.controller.listeners.append(
        lambda finished: ended.append((finished.status(), finished.description(), finished.outcome)))
    task = dialog.run()
    assert task is not None and not dialog.export_button.isEnabled()
    assert wait_for(lambda: task.progress() > 0, 30), "the stand-in engine did not start"
    dialog.cancel_run()
    assert wait_for(lambda: bool(ended), 60)
    [(status, description, outcome)] = ended
    assert outcome.canceled
    assert status == QgsTask.TaskStatus.Complete  # QGIS announces a terminated task as "Task failed"
    assert description.endswith("(canceled)")
    ours = [(message, level) for tag, message, level in logged if tag == "MISR"]
    assert ours and all(level == Qgis.MessageLevel.Info for _message, level in ours), ours
    assert any("interrupted" in message for message, _level in ours)
    text, level = _messages(iface)[-1]
    assert "canceled" in text and level == Qgis.MessageLevel.Info
    assert dialog.status_label.text().startswith("Canceled")
    assert not dialog.export_button.isEnabled()  # it would have exported the previous run


def test_the_status_line_shows_the_engine_s_step_and_the_time_while_the_bar_holds(
        stub_plugin, project, tmp_path, make_raster):
    """The steps before the network (screening, registration: minutes on a whole tile) report with
    the fraction held at 0, which QgsTask does not signal: the dialog's status line still shows
    them, and the time moving, every second."""
    layers = _layers(project, tmp_path, make_raster, ["a", "b", "c"])
    dialog = _open(stub_plugin)
    dialog.set_frames(layers, masks=[None] * 3)
    preparing = fake_engine(tmp_path / "preparing", run_body=sleeps_after_start(
        fraction=0.0, message="screening clouds and shadows, pass 1/2: registering the frames"))
    dialog.engine_widget.setFilePath(str(preparing))
    dialog.refresh_engine(force=True)
    assert dialog.wait_for_engine(60)
    ended = []
    stub_plugin.controller.listeners.append(ended.append)
    task = dialog.run()
    assert task is not None
    shown = "screening clouds and shadows, pass 1/2: registering the frames ("
    assert wait_for(lambda: dialog.status_label.text().startswith(shown), 30), dialog.status_label.text()
    first = dialog.status_label.text()
    assert wait_for(lambda: dialog.status_label.text() != first, 5), first  # the seconds move on their own
    assert dialog.status_label.text().startswith(shown) and "elapsed)" in dialog.status_label.text()
    assert dialog.progress_bar.value() == 0
    dialog.cancel_run()
    assert wait_for(lambda: bool(ended), 60)
    assert dialog.status_label.text().startswith("Canceled")


def test_the_area_is_whole_frames_until_chosen_then_passed_in_the_frames_crs(stub_plugin, project, tmp_path,
                                                                             make_raster):
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsRectangle
    layers = _layers(project, tmp_path, make_raster, ["a", "b", "c"])
    dialog = _open(stub_plugin)
    dialog.set_frames(layers, masks=[None] * 3)
    assert dialog.collect_parameters().extent is None
    assert dialog.area_widget.outputCrs() == layers[0].crs()  # it follows the first frame
    shown = [edit.text() for edit in dialog.area_widget.findChildren(QLineEdit) if edit.isVisible()]
    assert shown == ["Whole frames"], shown  # not the zero extent QGIS shows once a CRS is set
    inside = layers[0].extent().buffered(-60.0)
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    to_wgs84 = QgsCoordinateTransform(layers[0].crs(), wgs84, project)
    dialog.area_widget.setOutputExtentFromUser(to_wgs84.transformBoundingBox(inside), wgs84)  # drawn in degrees
    area = dialog.collect_parameters().extent
    assert area is not None and QgsRectangle(*area).contains(inside)  # back in the frames' CRS
    assert not dialog.validate()
    dialog.area_widget.clear()
    assert dialog.collect_parameters().extent is None


def test_export_uses_clean_names_and_opens_in_the_last_or_the_project_folder(
        stub_plugin, iface, project, tmp_path, make_raster, monkeypatch):
    layers = _layers(project, tmp_path, make_raster, ["a", "b"])
    dialog = _open(stub_plugin)
    dialog.set_frames(layers, masks=[None, None])
    _run(dialog)
    settings.set_value(settings.EXPORT_KEY, "")
    assert settings.export_folder(project) == os.path.expanduser("~")
    project.setPresetHomePath(str(tmp_path))
    assert settings.export_folder(project) == str(tmp_path)
    asked = []
    monkeypatch.setattr("qgis_misr.gui.dialog.QFileDialog.getExistingDirectory",
                        lambda parent, title, start: asked.append(start) or str(tmp_path / "cog"))
    dialog.export_button.click()
    written = sorted(os.path.basename(path) for path in os.listdir(tmp_path / "cog"))
    assert len(written) == 2 and all(".." not in name and " " not in name and ":" not in name for name in written)
    assert written[0].startswith("MISR_PIUnet_a_b_2_frames_") and written[0].endswith("_sr.tif")
    assert asked == [str(tmp_path)]  # the project's folder
    # the context menu's export opens where the last export went, not in the temporary folder
    monkeypatch.setattr("qgis_misr.plugin.QFileDialog.getExistingDirectory",
                        lambda parent, title, start: asked.append(start) or "")
    result = [layer for layer in project.mapLayers().values() if layer.customProperty("misr/role", "")][0]
    iface.setActiveLayer(result)
    stub_plugin.export_active_layer()
    assert asked[-1] == str(tmp_path / "cog")
    project.setPresetHomePath("")
    settings.set_value(settings.EXPORT_KEY, "")


def test_export_is_disabled_before_any_run(stub_plugin, project, tmp_path, make_raster):
    _layers(project, tmp_path, make_raster, ["a", "b"])
    dialog = _open(stub_plugin)
    assert not dialog.export_button.isEnabled() and stub_plugin.controller.last_results == {}
