"""QGIS plugin entry point. QGIS calls classFactory(iface) when it loads the plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qgis.gui import QgisInterface

    from .plugin import MisrPlugin


def classFactory(iface: QgisInterface) -> MisrPlugin:  # noqa: N802 (QGIS's name)
    from .plugin import MisrPlugin
    return MisrPlugin(iface)
