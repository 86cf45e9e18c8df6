"""qgis-misr engine: multi-image super-resolution of satellite time series (no QGIS inside)."""

__version__ = "0.1.0"

SCALE = 3
"""Upsampling factor of every model in this engine (LR pixel = 3 x 3 SR pixels)."""
