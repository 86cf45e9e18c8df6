"""The few API spellings that differ between QGIS 3.22+ (Qt5) and QGIS 4 (Qt6)."""

from __future__ import annotations

from qgis.core import Qgis

try:  # Qt6 (QGIS 4): QAction lives in QtGui
    from qgis.PyQt.QtGui import QAction  # noqa: F401
except ImportError:  # Qt5 (QGIS 3)
    from qgis.PyQt.QtWidgets import QAction  # noqa: F401


def raster_layer_type():
    """The raster layer type enum value (Qgis.LayerType.Raster on newer QGIS)."""
    layer_type = getattr(Qgis, "LayerType", None)
    if layer_type is not None and hasattr(layer_type, "Raster"):
        return layer_type.Raster
    from qgis.core import QgsMapLayerType
    return QgsMapLayerType.RasterLayer


def number_type_integer():
    """Integer type of QgsProcessingParameterNumber."""
    scoped = getattr(Qgis, "ProcessingNumberParameterType", None)
    if scoped is not None:
        return scoped.Integer
    from qgis.core import QgsProcessingParameterNumber
    return QgsProcessingParameterNumber.Type.Integer


def source_type_raster():
    """Raster type of QgsProcessingParameterMultipleLayers."""
    scoped = getattr(Qgis, "ProcessingSourceType", None)
    if scoped is not None:
        return scoped.Raster
    from qgis.core import QgsProcessing
    return QgsProcessing.SourceType.TypeRaster


def parameter_flag_advanced():
    scoped = getattr(Qgis, "ProcessingParameterFlag", None)
    if scoped is not None:
        return scoped.Advanced
    from qgis.core import QgsProcessingParameterDefinition
    return QgsProcessingParameterDefinition.Flag.FlagAdvanced


def file_behavior_file():
    scoped = getattr(Qgis, "ProcessingFileParameterBehavior", None)
    if scoped is not None:
        return scoped.File
    from qgis.core import QgsProcessingParameterFile
    return QgsProcessingParameterFile.Behavior.File
