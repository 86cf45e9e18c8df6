"""Processing provider "MISR": misr:superresolve (one scene) and misr:batch (a manifest of scenes)."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..resources import icon_path
from .algorithm import SuperResolveAlgorithm
from .batch_algorithm import RunManifestAlgorithm


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
        self.addAlgorithm(RunManifestAlgorithm())
