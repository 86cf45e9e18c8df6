"""Fixtures of the plugin tests: the headless QGIS application, Processing, an iface stub, the
project, the sample time series, the real engine and small GeoTIFFs (``make_raster``).

The helpers behind them (and the stand-in engine) are in plugin_support.py, which needs QGIS:
it is imported only by the fixtures that use QGIS, so the Qt-free core tests run without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.rasters import SAMPLE

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QGIS application exists
# The plugin writes the engine path for every profile into $XDG_CONFIG_HOME/qgis-misr, and the
# engine set-up goes to $XDG_DATA_HOME/qgis-misr: keep the tests' out of the user's own (and
# the user's out of the tests). QgsSettings then live there too, fresh for every session.
_USER_FILES = Path(tempfile.mkdtemp(prefix="misr-test-user-"))
os.environ["XDG_CONFIG_HOME"] = str(_USER_FILES / "config")
os.environ["XDG_DATA_HOME"] = str(_USER_FILES / "data")


def _support():
    pytest.importorskip("qgis.core")
    from . import plugin_support
    return plugin_support


def write_raster(path, width=30, height=20, origin=(500000.0, 4000000.0), pixel=30.0, epsg=32618,
                 bands=1, value=None, wkt=None, geotransform=None) -> str:
    """A small float32 GeoTIFF (``tests.rasters.make_raster``) on a north-up grid of `pixel`-sized
    pixels from `origin` in EPSG:`epsg` (or the CRS `wkt`, '' for none; or the given
    `geotransform`), random or constant values."""
    import numpy as np
    from osgeo import gdal

    from tests.rasters import make_raster
    rng = np.random.default_rng(0)
    data = rng.random((bands, height, width), dtype=np.float32) if value is None else \
        np.full((bands, height, width), value, np.float32)
    return str(make_raster(path, data, gdal.GDT_Float32,
                           geotransform or (origin[0], pixel, 0.0, origin[1], 0.0, -pixel), epsg, wkt=wkt))


@pytest.fixture()
def make_raster():
    """``make_raster(path, width=30, height=20, origin=..., pixel=30.0, epsg=32618, ...)``: see
    write_raster."""
    pytest.importorskip("osgeo.gdal")
    return write_raster


@pytest.fixture(scope="session")
def qgis_app():
    return _support().ensure_qgis_app()


@pytest.fixture(scope="session")
def processing_ready(qgis_app):
    _support().ensure_processing()
    return True


@pytest.fixture()
def iface(qgis_app):
    return _support().IfaceStub()


@pytest.fixture()
def provider(iface, processing_ready):
    """The plugin's Processing provider, initialised as QGIS does, unloaded after the test."""
    import qgis_misr
    plugin = qgis_misr.classFactory(iface)
    plugin.initProcessing()
    yield plugin.provider
    plugin.unload()


@pytest.fixture()
def project(qgis_app):
    """QgsProject.instance(), emptied after the test."""
    from qgis.core import QgsProject
    project = QgsProject.instance()
    yield project
    _support().wait_for(lambda: False, 0.05)
    project.removeAllMapLayers()
    project.layerTreeRoot().removeAllChildren()


@pytest.fixture()
def sample_frames():
    if not (SAMPLE / "frame_01.tif").is_file():
        pytest.skip(f"the sample time series ({SAMPLE}/frame_01.tif...) is not there")
    return sorted(SAMPLE.glob("frame_*.tif")), sorted(SAMPLE.glob("mask_*.tif"))


_ENGINE_STATE = {}


@pytest.fixture(scope="session")
def engine():
    """The real engine (an EngineLocation); skips when it is not installed or cannot run
    (e.g. no model weights yet)."""
    if "value" not in _ENGINE_STATE:
        from qgis_misr.core.engine import locate_engine
        location = locate_engine("", plugin_dir=REPO / "qgis_misr")
        reason = None
        if location is None:
            reason = "the misr engine is not installed (.venv/bin/misr, MISR_ENGINE or PATH)"
        else:
            try:
                out = subprocess.run(list(location.argv) + ["models", "--json"], capture_output=True,
                                     text=True, timeout=120)
                models = json.loads(out.stdout.strip().splitlines()[-1])["models"]
                if not any(m.get("weights") for m in models):
                    reason = "the engine has no model weights yet (misr models --json)"
            except Exception as exc:  # noqa: BLE001
                reason = f"the engine does not answer 'misr models --json': {exc}"
        _ENGINE_STATE["value"] = (location, reason)
    location, reason = _ENGINE_STATE["value"]
    if reason:
        pytest.skip(reason)
    return location
