"""The plugin's logic without any GUI: parameters, validation (with the engine's grid check),
engine discovery and its models, the engine command line and contract, the subprocess runner,
the one run path that the dialog's task and the Processing algorithm share, and the COG export.

Nothing in this package imports Qt or QGIS (``grid`` and ``export`` use GDAL's Python bindings
only), so it can be unit-tested without a QGIS application. It never imports torch nor
``misr_engine``: the engine is always a subprocess.
"""
