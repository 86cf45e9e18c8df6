"""Processing provider "MISR": one algorithm, misr:superresolve."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..resources import icon_path
from .algorithm import SuperResolveAlgorithm


class MisrProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "misr"

    def name(self) -> str:
        return "MISR"

    def longName(self) -> str:
        return "MISR multi-image super-resolution"

    def icon(self) -> QIcon:
        return QIcon(icon_path("misr.svg"))

    def loadAlgorithms(self) -> None:
        self.addAlgorithm(SuperResolveAlgorithm())
