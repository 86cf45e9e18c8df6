#!/usr/bin/env python3
"""Screenshots of the plugin for the docs, on a 1366x768 screen, with the real engine on the
sample time series (`make screenshots`):

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/screenshots/make_screenshots.py

Writes, each a grab of the whole screen: docs/screenshots/dialog.png (the dialog, ready to
run), dialog_weights.png (its weights list open), dialog_problems.png (validation of a
mismatched layer), dialog_engine.png (the Engine
section with the engine set-up), dialog_running.png (a run in progress) and map_overlay.png
(layer tree and map with the SR and the uncertainty overlay). Takes a minute or two on a CPU.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
SAMPLE = REPO / "engine" / "misr_engine" / "data" / "sample"  # the engine's package data
sys.path.insert(0, str(REPO))

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer  # noqa: E402
from qgis.gui import QgsLayerTreeMapCanvasBridge, QgsLayerTreeView, QgsMapCanvas, QgsMessageBar  # noqa: E402
from qgis.core import QgsLayerTreeModel  # noqa: E402
from qgis.PyQt.QtCore import QCoreApplication, Qt  # noqa: E402
from qgis.PyQt.QtGui import QGuiApplication  # noqa: E402
from qgis.PyQt.QtWidgets import QMainWindow, QSplitter, QVBoxLayout, QWidget  # noqa: E402


class Iface:
    """The part of QgisInterface the plugin uses."""

    def __init__(self, window, canvas, bar):
        self._window, self._canvas, self._bar, self._active = window, canvas, bar, None

    def mainWindow(self): return self._window  # noqa: E704,N802
    def mapCanvas(self): return self._canvas  # noqa: E704,N802
    def messageBar(self): return self._bar  # noqa: E704,N802
    def addToolBarIcon(self, action): pass  # noqa: E704,N802
    def removeToolBarIcon(self, action): pass  # noqa: E704,N802
    def addPluginToRasterMenu(self, name, action): pass  # noqa: E704,N802
    def removePluginRasterMenu(self, name, action): pass  # noqa: E704,N802
    def addCustomActionForLayerType(self, *args): pass  # noqa: E704,N802
    def removeCustomActionForLayerType(self, action): return True  # noqa: E704,N802
    def addCustomActionForLayer(self, action, layer): pass  # noqa: E704,N802
    def activeLayer(self): return self._active  # noqa: E704,N802


def grab_screen(path: Path) -> None:
    """The whole screen as people see it (the dialog over the main window)."""
    pump(0.5)
    if not QGuiApplication.primaryScreen().grabWindow(0).save(str(path)):
        raise RuntimeError(f"cannot grab the screen into {path} (run under Xvfb with QT_QPA_PLATFORM=xcb)")


def pump(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.02)


def main() -> int:
    app = QgsApplication([], True)
    app.initQgis()
    app.setStyle("Fusion")
    project = QgsProject.instance()

    window = QMainWindow()
    window.setWindowTitle("QGIS - MISR super-resolution")
    central = QWidget()
    layout = QVBoxLayout(central)
    layout.setContentsMargins(0, 0, 0, 0)
    bar = QgsMessageBar()
    layout.addWidget(bar)
    splitter = QSplitter(Qt.Orientation.Horizontal)
    tree_view = QgsLayerTreeView()
    model = QgsLayerTreeModel(project.layerTreeRoot())
    model.setFlag(QgsLayerTreeModel.Flag.AllowNodeChangeVisibility)
    tree_view.setModel(model)
    canvas = QgsMapCanvas()
    canvas.setCanvasColor(Qt.GlobalColor.white)
    bridge = QgsLayerTreeMapCanvasBridge(project.layerTreeRoot(), canvas)  # noqa: F841 (kept alive)
    splitter.addWidget(tree_view)
    splitter.addWidget(canvas)
    splitter.setSizes([380, 1000])
    layout.addWidget(splitter, 1)
    window.setCentralWidget(central)
    screen = QGuiApplication.primaryScreen().geometry()
    window.setGeometry(screen)
    window.show()

    frames = []
    for index in range(1, 10):
        for kind in ("frame", "mask"):
            layer = QgsRasterLayer(str(SAMPLE / f"{kind}_{index:02d}.tif"), f"{kind}_{index:02d}", "gdal")
            assert layer.isValid(), layer.source()
            project.addMapLayer(layer, kind == "frame" and index == 1)
            if kind == "frame":
                frames.append(layer)

    import qgis_misr
    plugin = qgis_misr.classFactory(Iface(window, canvas, bar))
    plugin.initGui()
    dialog = plugin.show_dialog()
    if not dialog.wait_for_engine(300):
        print("the engine did not answer", file=sys.stderr)
        return 1
    dialog.fit_to_screen()
    dialog.move((screen.width() - dialog.width()) // 2, (screen.height() - dialog.height()) // 2)
    print(f"screen {screen.width()}x{screen.height()}, dialog {dialog.width()}x{dialog.height()}")

    # 1. validation of a layer on another grid
    with tempfile.TemporaryDirectory() as tmp:
        from osgeo import gdal
        odd = str(Path(tmp) / "frame_10_60m.tif")
        gdal.Translate(odd, str(SAMPLE / "frame_01.tif"), xRes=60, yRes=60).FlushCache()
        odd_layer = QgsRasterLayer(odd, "frame_10_60m", "gdal")
        project.addMapLayer(odd_layer, False)
        dialog.set_frames(frames + [odd_layer])
        pump(1.0)
        grab_screen(OUT / "dialog_problems.png")
        project.removeMapLayer(odd_layer.id())

    # 2. the Engine section with the engine set-up
    dialog.set_frames(frames)
    dialog.engine_section.setCollapsed(False)
    dialog.setup_box.setCollapsed(False)
    pump(0.5)
    dialog.scroll.ensureWidgetVisible(dialog.setup_panel.setup_button)
    grab_screen(OUT / "dialog_engine.png")
    dialog.setup_box.setCollapsed(True)
    dialog.engine_section.setCollapsed(True)
    dialog.scroll.verticalScrollBar().setValue(0)

    # 3. the dialog ready to run
    dialog.tile_spin.setValue(128)
    pump(1.0)
    grab_screen(OUT / "dialog.png")

    # 3b. the weights list open: the shipped options (supervised, self-supervised) and "Other file..."
    dialog.scroll.ensureWidgetVisible(dialog.weights_combo)
    dialog.weights_combo.showPopup()
    pump(0.5)
    grab_screen(OUT / "dialog_weights.png")
    dialog.weights_combo.hidePopup()
    dialog.scroll.verticalScrollBar().setValue(0)

    # 4. run, then the map with the results
    task = dialog.run()
    if task is None:
        print("could not start:", dialog.problems_label.text(), file=sys.stderr)
        return 1
    end = time.monotonic() + 300  # past the steps before the network: the status line gives the time left
    while task.result is None and time.monotonic() < end and not task.message.startswith("tile 2/"):
        pump(0.5)
    pump(1.5)
    grab_screen(OUT / "dialog_running.png")
    end = time.monotonic() + 900
    while task.result is None and time.monotonic() < end:
        pump(0.5)
    pump(2.0)
    if task.result is None or not task.result.ok:
        print("run failed:", task.error, file=sys.stderr)
        return 1
    dialog.hide()
    for layer in project.mapLayers().values():
        if not layer.customProperty("misr/role", ""):
            node = project.layerTreeRoot().findLayer(layer.id())
            if node is not None:
                node.setItemVisibilityChecked(False)
    tree_view.expandAll()
    window.show()
    group_layers = [n.layer() for n in project.layerTreeRoot().children()[0].findLayers()]
    canvas.setDestinationCrs(group_layers[-1].crs())
    canvas.setExtent(group_layers[-1].extent())
    canvas.refresh()
    pump(4.0)
    canvas.waitWhileRendering()
    pump(1.0)
    grab_screen(OUT / "map_overlay.png")
    plugin.unload()
    print("wrote", ", ".join(str(p.relative_to(REPO)) for p in sorted(OUT.glob("*.png"))))
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # skip Qt/QGIS teardown at interpreter exit (it can crash headless)
