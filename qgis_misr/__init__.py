"""QGIS plugin entry point. QGIS calls classFactory(iface) when it loads the plugin."""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    from .plugin import MisrPlugin
    return MisrPlugin(iface)
