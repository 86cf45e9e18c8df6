"""The plugin's pre-run grid check says "off the grid" exactly when the engine's does: on grids
given directly (WKT spellings of one CRS, a CRS that only claims an EPSG code, shifts, pixel
sizes, flips, missing CRSs) and on files read the way each side reads them (the plugin through
its QGIS layers, the engine through GDAL)."""

from __future__ import annotations

from pathlib import Path

import pytest


osr = pytest.importorskip("osgeo.osr")
from misr_engine.rasters.grid import Grid as EngineGrid  # noqa: E402
from misr_engine.rasters.stack import offset_words as engine_offset_words  # noqa: E402
from qgis_misr.core.grid import Grid, covered_share, mismatches, offset_of, offset_words  # noqa: E402


def _wkt(epsg: int = 32633, options=None) -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt(options or [])


def _esri_wkt() -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    srs.MorphToESRI()
    return srs.ExportToWkt()


UTM33 = _wkt()
GT = (500000.0, 30.0, 0.0, 4000000.0, 0.0, -30.0)
CASES = {
    # name: (first grid, second grid, whether they are one grid)
    "same grid": ((UTM33, GT, 30, 20), (UTM33, GT, 30, 20), True),
    "noise far below a pixel": ((UTM33, GT, 30, 20), (UTM33, (500000.0 + 1e-6, 30.0 + 1e-9, 0.0, 4000000.0,
                                                              0.0, -30.0), 30, 20), True),
    "origin shifted by a pixel": ((UTM33, GT, 30, 20), (UTM33, (500030.0,) + GT[1:], 30, 20), False),
    "origin shifted by 1e-3 pixel": ((UTM33, GT, 30, 20), (UTM33, (500000.03,) + GT[1:], 30, 20), False),
    "EPSG:32633 as WKT1 and WKT2": ((UTM33, GT, 30, 20), (_wkt(options=["FORMAT=WKT2_2018"]), GT, 30, 20), True),
    "EPSG:32633 as WKT1 and ESRI WKT": ((UTM33, GT, 30, 20), (_esri_wkt(), GT, 30, 20), True),
    "a WKT that claims EPSG:32633 with another meridian": (
        (UTM33, GT, 30, 20),
        (UTM33.replace('"central_meridian",15]', '"central_meridian",16]'), GT, 30, 20), False),
    "other CRS": ((UTM33, GT, 30, 20), (_wkt(32618), GT, 30, 20), False),
    "other pixel size, same footprint": ((UTM33, GT, 30, 20), (UTM33, (500000.0, 10.0, 0.0, 4000000.0, 0.0,
                                                                        -10.0), 90, 60), False),
    "other size": ((UTM33, GT, 30, 20), (UTM33, GT, 31, 20), False),
    "rows flipped, same footprint": ((UTM33, GT, 30, 20), (UTM33, (500000.0, 30.0, 0.0, 3999400.0, 0.0, 30.0),
                                                           30, 20), False),
    "rotated": ((UTM33, GT, 30, 20), (UTM33, (500000.0, 30.0, 0.5, 4000000.0, 0.5, -30.0), 30, 20), False),
    "no CRS on the second": ((UTM33, GT, 30, 20), ("", GT, 30, 20), False),
    "no CRS on the first": (("", GT, 30, 20), (UTM33, GT, 30, 20), False),
    "no CRS on either": (("", GT, 30, 20), ("", GT, 30, 20), True),
}


@pytest.mark.parametrize("first, second, same", CASES.values(), ids=list(CASES))
def test_plugin_and_engine_agree_on_grids(first, second, same):
    engine_says = EngineGrid(*first).mismatch(EngineGrid(*second))
    plugin_says = mismatches(Grid(*first), Grid(*second))
    assert (engine_says is None) == same, engine_says
    assert (plugin_says == []) == same, plugin_says


@pytest.mark.parametrize("first, second, same", CASES.values(), ids=list(CASES))
def test_plugin_and_engine_agree_on_footprints_whole_pixels_off(first, second, same):
    engine_offset = EngineGrid(*first).offset_of(EngineGrid(*second))
    assert offset_of(Grid(*first), Grid(*second)) == engine_offset
    if engine_offset is not None:
        assert covered_share(Grid(*first), Grid(*second), engine_offset) == \
            EngineGrid(*first).covered_by(EngineGrid(*second), engine_offset)


def test_whole_pixel_offsets_are_found_exactly():
    first = Grid(UTM33, GT, 30, 20)
    assert offset_of(first, Grid(UTM33, (500030.0,) + GT[1:], 30, 20)) == (1, 0)
    assert offset_of(first, Grid(UTM33, (499940.0, 30.0, 0.0, 4000090.0, 0.0, -30.0), 40, 10)) == (-2, -3)
    assert offset_of(first, Grid(UTM33, (500000.03,) + GT[1:], 30, 20)) is None
    assert offset_of(first, Grid(_wkt(32618), GT, 30, 20)) is None


def test_offsets_are_said_as_on_a_map_by_both():
    """A raster whose origin lies 2 columns west and 3 rows north of the first frame's (a north-up
    grid) starts left of and above its first pixel, not "-2 columns and -3 rows off"."""
    first = Grid(UTM33, GT, 30, 20)
    offset = offset_of(first, Grid(UTM33, (499940.0, 30.0, 0.0, 4000090.0, 0.0, -30.0), 40, 10))
    assert offset_words(*offset) == "2 columns left of and 3 rows above"
    for cols, rows, said in ((1, 0, "1 column right of"), (0, 1, "1 row below"), (0, 0, "at"),
                             (-1, 4, "1 column left of and 4 rows below"), (*offset, offset_words(*offset))):
        assert offset_words(cols, rows) == engine_offset_words(cols, rows) == said


def test_the_plugin_says_what_differs():
    first = Grid(UTM33, GT, 30, 20)
    assert mismatches(first, Grid(UTM33, (500030.0,) + GT[1:], 30, 20)) == [
        "extent (500030, 3999400, 500930, 4000000) differs from (500000, 3999400, 500900, 4000000)"]
    assert mismatches(first, Grid(_wkt(32618), GT, 30, 20)) == ["CRS EPSG:32618 differs from EPSG:32633"]
    assert mismatches(first, Grid(CASES["a WKT that claims EPSG:32633 with another meridian"][1][0], GT, 30, 20),
                      ("EPSG:32633", "EPSG:32633")) == [
        "CRS EPSG:32633 differs from EPSG:32633 (same name, other definition)"]
    assert mismatches(first, Grid("", GT, 30, 20)) == ["CRS unknown differs from EPSG:32633"]
    assert mismatches(first, Grid(UTM33, (500000.0, 30.0, 0.0, 3999400.0, 0.0, 30.0), 30, 20)) == [
        "orientation (geotransform (500000, 30, 0, 3999400, 0, 30)) differs from "
        "(500000, 30, 0, 4000000, 0, -30)"]


FILES = {
    # name: (make_raster's keyword arguments for the second file (the first has the defaults),
    #        whether they are one grid)
    "same grid": ({}, True),
    "origin shifted by a pixel": ({"origin": (500030.0, 4000000.0)}, False),
    "EPSG:32618 written as WKT2": ({"wkt": _wkt(32618, ["FORMAT=WKT2_2018"])}, True),
    "other CRS": ({"epsg": 32633}, False),
    "other pixel size, same footprint": ({"pixel": 10.0, "width": 90, "height": 60}, False),
    "rows flipped, same footprint": ({"geotransform": (500000.0, 30.0, 0.0, 3999400.0, 0.0, 30.0)}, False),
    "no CRS": ({"wkt": ""}, False),
}


@pytest.mark.parametrize("changes, same", FILES.values(), ids=list(FILES))
def test_plugin_and_engine_agree_on_files(changes, same, tmp_path, make_raster, qgis_app):
    """The plugin reads its layers (layers.raster_info), the engine its files (GDAL)."""
    from osgeo import gdal
    from qgis.core import QgsRasterLayer

    from qgis_misr.core.params import FrameInput
    from qgis_misr.core.validation import validate_inputs
    from qgis_misr.layers import raster_info
    paths = [make_raster(tmp_path / "a.tif"), make_raster(tmp_path / "b.tif", **changes)]
    engine_grids = []
    for path in paths:
        dataset = gdal.Open(path)
        engine_grids.append(EngineGrid(dataset.GetProjection() or "", tuple(dataset.GetGeoTransform()),
                                       dataset.RasterXSize, dataset.RasterYSize))
    engine_says = engine_grids[0].mismatch(engine_grids[1])
    layers = [QgsRasterLayer(path, Path(path).stem, "gdal") for path in paths]
    problems = validate_inputs([FrameInput(raster_info(layer)) for layer in layers])
    assert (engine_says is None) == same, engine_says
    assert (problems == []) == same, problems
