"""Helpers for the plugin tests that need QGIS (the fixtures are in conftest.py): one headless
QgsApplication per process, a QgisInterface stub, Processing, waiting for tasks, crops of the
sample time series.

Everything is idempotent, so test files can be run alone or together, and other test files are
unaffected (the QgsApplication is created once and never torn down while the process lives).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsTask
from qgis.PyQt.QtCore import QCoreApplication

from tests.rasters import SAMPLE

REPO = Path(__file__).resolve().parents[2]
PROCESSING_PLUGINS = "/usr/share/qgis/python/plugins"

_APP = None
_PROCESSING_READY = False


def ensure_qgis_app() -> QgsApplication:
    """The process's QgsApplication, created (headless) on first use, reused afterwards."""
    global _APP
    existing = QgsApplication.instance()
    if existing is not None:
        if _APP is None:
            _APP = existing
        return existing
    # Keep the tests' settings (QgsSettings) out of the user's own QGIS configuration.
    # (QgsSettings then live under ~/.local/share/qgis-misr-tests, not in a real QGIS profile.)
    QCoreApplication.setOrganizationName("qgis-misr-tests")
    QCoreApplication.setApplicationName("qgis-misr-tests")
    _APP = QgsApplication([], False)
    _APP.initQgis()
    return _APP


def ensure_processing() -> None:
    global _PROCESSING_READY
    ensure_qgis_app()
    if _PROCESSING_READY:
        return
    if os.path.isdir(PROCESSING_PLUGINS) and PROCESSING_PLUGINS not in sys.path:
        sys.path.append(PROCESSING_PLUGINS)
    from processing.core.Processing import Processing
    Processing.initialize()
    _PROCESSING_READY = True


def wait_for(condition, timeout_s: float = 120.0, step_s: float = 0.02) -> bool:
    """Process Qt events until `condition()` is true or the timeout passes."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        if condition():
            return True
        time.sleep(step_s)
    QCoreApplication.processEvents()
    return bool(condition())


def wait_for_task(task, timeout_s: float = 300.0) -> bool:
    """Wait until a QgsTask has ended and its finished() has run."""
    done = {"flag": False}
    task.taskCompleted.connect(lambda: done.__setitem__("flag", True))
    task.taskTerminated.connect(lambda: done.__setitem__("flag", True))
    ended = (QgsTask.TaskStatus.Complete, QgsTask.TaskStatus.Terminated)
    ok = wait_for(lambda: done["flag"] or task.status() in ended, timeout_s)
    wait_for(lambda: False, 0.3)  # let finished() and queued signals run
    return ok


class IfaceStub:
    """Enough of QgisInterface for the plugin: records what the plugin adds and removes."""

    def __init__(self):
        from qgis.gui import QgsMapCanvas, QgsMessageBar
        from qgis.PyQt.QtWidgets import QMainWindow

        class RecordingBar(QgsMessageBar):
            def __init__(bar, parent=None):
                super().__init__(parent)
                bar.messages = []

            def pushMessage(bar, *args, **kwargs):  # noqa: N802
                bar.messages.append((args, kwargs))
                return super().pushMessage(*args, **kwargs)

        self._window = QMainWindow()
        self._canvas = QgsMapCanvas(self._window)
        self._bar = RecordingBar(self._window)
        self.toolbar = []
        self.raster_menu = []
        self.layer_type_actions = []
        self.layer_actions = []
        self._active = None

    def mainWindow(self):  # noqa: N802
        return self._window

    def mapCanvas(self):  # noqa: N802
        return self._canvas

    def messageBar(self):  # noqa: N802
        return self._bar

    def addToolBarIcon(self, action):  # noqa: N802
        self.toolbar.append(action)

    def removeToolBarIcon(self, action):  # noqa: N802
        self.toolbar.remove(action)

    def addPluginToRasterMenu(self, name, action):  # noqa: N802
        self.raster_menu.append((name, action))

    def removePluginRasterMenu(self, name, action):  # noqa: N802
        self.raster_menu.remove((name, action))

    def addCustomActionForLayerType(self, action, menu, layer_type, all_layers):  # noqa: N802
        self.layer_type_actions.append(action)

    def removeCustomActionForLayerType(self, action):  # noqa: N802
        if action in self.layer_type_actions:
            self.layer_type_actions.remove(action)
            self.layer_actions = [(a, l) for a, l in self.layer_actions if a is not action]
            return True
        return False

    def addCustomActionForLayer(self, action, layer):  # noqa: N802
        self.layer_actions.append((action, layer.id()))

    def activeLayer(self):  # noqa: N802
        return self._active

    def setActiveLayer(self, layer):  # noqa: N802
        self._active = layer
        return True


def crop_sample(folder, count: int = 9, size: int = 48, offset=(51, 51)) -> Path:
    """A `size` x `size`-pixel window of the first `count` sample frames and masks, written to
    `folder` with the same names: real data, small enough for a quick run of the real engine
    on a busy 2-core machine."""
    from osgeo import gdal
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(1, count + 1):
        for kind in ("frame", "mask"):
            name = f"{kind}_{index:02d}.tif"
            gdal.Translate(str(folder / name), str(SAMPLE / name),
                           srcWin=[offset[0], offset[1], size, size]).FlushCache()
    return folder


def off_grid_sample(folder, count: int = 4, index: int = 2, factor: float = 1.1) -> Path:
    """A crop of the sample (see crop_sample) where frame `index` and its mask are resampled by
    GDAL onto pixels `factor` times larger (frame bilinear, mask nearest): the same scene on
    another grid (pixel size, size and extent differ), as a frame from another product would be."""
    from osgeo import gdal
    folder = crop_sample(folder, count)
    for kind, resampling in (("frame", "bilinear"), ("mask", "near")):
        path = folder / f"{kind}_{index:02d}.tif"
        pixel = abs(gdal.Open(str(path)).GetGeoTransform()[1]) * factor
        warped = folder / f"{kind}_{index:02d}.warped.tif"
        gdal.Warp(str(warped), str(path), xRes=pixel, yRes=pixel, resampleAlg=resampling).FlushCache()
        os.replace(warped, path)
    return folder


def load_sample(count: int = 9, masks: bool = True, project=None, folder=None):
    """Add frame_01.. (and mask_01..) of the sample (or of a crop of it in `folder`) to the
    project; returns (frames, masks)."""
    project = project or QgsProject.instance()
    folder = Path(folder) if folder else SAMPLE
    frames, mask_layers = [], []
    for index in range(1, count + 1):
        frame = QgsRasterLayer(str(folder / f"frame_{index:02d}.tif"), f"frame_{index:02d}", "gdal")
        assert frame.isValid(), frame.source()
        project.addMapLayer(frame)
        frames.append(frame)
        if masks:
            mask = QgsRasterLayer(str(folder / f"mask_{index:02d}.tif"), f"mask_{index:02d}", "gdal")
            assert mask.isValid(), mask.source()
            project.addMapLayer(mask)
            mask_layers.append(mask)
    return frames, mask_layers

