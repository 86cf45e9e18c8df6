"""The plugin object: toolbar button, Raster-menu entry, layer context-menu export, Processing
provider; everything it adds is removed again by unload()."""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterable, Optional

from qgis.core import QgsApplication, QgsMapLayer, QgsProject, QgsRasterLayer
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QFileDialog

from . import settings
from .compat import QAction, raster_layer_type
from .controller import RunController
from .layers import ROLE, RUN, SR_PATH, UNCERTAINTY_PATH, is_result_layer
from .resources import icon_path

if TYPE_CHECKING:
    from qgis.gui import QgisInterface

    from .gui.dialog import MisrDialog

MENU = "&MISR Super-Resolution"


class MisrPlugin:
    def __init__(self, iface: QgisInterface):
        self.iface = iface
        self.controller = RunController(iface)
        self.provider = None
        self.action: Optional[QAction] = None
        self.export_action: Optional[QAction] = None
        self.dialog = None

    # -- Processing ---------------------------------------------------------------------------------
    def initProcessing(self) -> None:  # noqa: N802 (QGIS's name)
        from .processing_provider.provider import MisrProvider
        if self.provider is None:
            self.provider = MisrProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    # -- GUI ----------------------------------------------------------------------------------------
    def initGui(self) -> None:  # noqa: N802 (QGIS's name)
        self.initProcessing()
        window = self.iface.mainWindow()
        self.action = QAction(QIcon(icon_path("misr.svg")), "Super-resolve time series (x3)...", window)
        self.action.setObjectName("misrSuperResolve")
        self.action.setToolTip("MISR: multi-image super-resolution (x3) of a time series")
        self.action.triggered.connect(self.show_dialog)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU, self.action)

        self.export_action = QAction(QIcon(icon_path("misr.svg")),
                                     "Export MISR results as Cloud-Optimized GeoTIFF...", window)
        self.export_action.setObjectName("misrExportCog")
        self.export_action.triggered.connect(self.export_active_layer)
        self.iface.addCustomActionForLayerType(self.export_action, "", raster_layer_type(), False)
        QgsProject.instance().layersAdded.connect(self._register_result_layers)
        self._register_result_layers(list(QgsProject.instance().mapLayers().values()))

    def unload(self) -> None:
        self.controller.cancel_all()
        try:
            QgsProject.instance().layersAdded.disconnect(self._register_result_layers)
        except (TypeError, RuntimeError):
            pass
        if self.dialog is not None:
            self.dialog.disconnect_project()
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None
        if self.export_action is not None:
            self.iface.removeCustomActionForLayerType(self.export_action)
            self.export_action.deleteLater()
            self.export_action = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def show_dialog(self) -> MisrDialog:
        """Open (or raise) the dialog; it is non-modal so the map stays usable while it runs."""
        from .gui.dialog import MisrDialog
        if self.dialog is None:
            self.dialog = MisrDialog(self.controller, parent=self.iface.mainWindow())
        else:
            self.dialog.refresh_layers()
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
        return self.dialog

    # -- export from the layer tree's context menu ------------------------------------------------
    def _register_result_layers(self, layers: Iterable[QgsMapLayer]) -> None:
        if self.export_action is None:
            return
        for layer in layers:
            if not isinstance(layer, QgsRasterLayer):
                continue
            if is_result_layer(layer):
                self.iface.addCustomActionForLayer(self.export_action, layer)
            else:  # Processing tags its outputs after adding them to the project
                layer.customPropertyChanged.connect(
                    lambda key, layer=layer: self._tagged(layer, key))

    def _tagged(self, layer: QgsRasterLayer, key: str) -> None:
        if key == ROLE and self.export_action is not None and is_result_layer(layer):
            self.iface.addCustomActionForLayer(self.export_action, layer)

    def export_active_layer(self, _checked: bool = False, folder: Optional[str] = None) -> Optional[Dict[str, str]]:
        layer = self.iface.activeLayer()
        if layer is None or not is_result_layer(layer):
            self.controller.message("Select a MISR result layer to export.")
            return None
        sr = layer.customProperty(SR_PATH, "")
        uncertainty = layer.customProperty(UNCERTAINTY_PATH, "")
        if folder is None:
            folder = QFileDialog.getExistingDirectory(
                self.iface.mainWindow(), "Export the results as Cloud-Optimized GeoTIFFs",
                settings.export_folder())
        if not folder:
            return None
        return self.controller.export(sr, uncertainty, folder, layer.customProperty(RUN, "misr"))
