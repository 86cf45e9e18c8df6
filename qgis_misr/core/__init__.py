"""The plugin's logic without any GUI: parameters, validation, engine discovery and the engine
command line, the subprocess runner and the COG export.

Nothing in this package imports Qt or QGIS (``export`` uses GDAL's Python bindings only), so it
can be unit-tested without a QGIS application. It never imports torch nor ``misr_engine``: the
engine is always a subprocess.
"""
