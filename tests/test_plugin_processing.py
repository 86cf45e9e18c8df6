"""The Processing algorithm misr:superresolve with the real engine on the sample, as the Toolbox,
the modeler, batch mode and qgis_process run it (through processing.run)."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the helpers, whatever the import mode
from test_plugin_helpers import *  # noqa: F401,F403,E402 (fixtures)
from test_plugin_helpers import crop_sample, make_raster

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
)

import qgis_misr  # noqa: E402


@pytest.fixture()
def provider(iface, processing_ready):
    plugin = qgis_misr.classFactory(iface)
    plugin.initProcessing()
    yield plugin.provider
    plugin.unload()


def _run(parameters, feedback=None):
    import processing
    context = QgsProcessingContext()
    return processing.run("misr:superresolve", parameters, feedback=feedback or QgsProcessingFeedback(),
                          context=context)


def test_algorithm_is_registered_with_its_parameters(provider):
    algorithm = QgsApplication.processingRegistry().algorithmById("misr:superresolve")
    assert algorithm is not None and provider.name() == "MISR"
    names = [p.name() for p in algorithm.parameterDefinitions()]
    for name in ("FRAMES", "MASKS", "BAND", "MODEL", "TTF_STEPS", "DEVICE", "TILE_SIZE", "OUTPUT", "UNCERTAINTY"):
        assert name in names
    assert algorithm.parameterDefinition("FRAMES").layerType() == 3  # raster
    assert algorithm.parameterDefinition("MASKS").flags() & 8  # optional
    assert algorithm.parameterDefinition("OUTPUT").type() == "rasterDestination"
    assert algorithm.parameterDefinition("UNCERTAINTY").type() == "rasterDestination"
    assert {o.name() for o in algorithm.outputDefinitions()} == {"OUTPUT", "UNCERTAINTY"}


def test_algorithm_super_resolves_the_sample(provider, engine, tmp_path, sample_frames):
    sample = crop_sample(tmp_path / "sample", 4)
    frames = [str(sample / f"frame_{i:02d}.tif") for i in range(1, 5)]
    masks = [str(sample / f"mask_{i:02d}.tif") for i in (3, 1, 4, 2)]  # any order: paired by name
    progress = []
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(progress.append)
    result = _run({"FRAMES": frames, "MASKS": masks, "TILE_SIZE": 48, "DEVICE": 1,
                   "OUTPUT": str(tmp_path / "sr.tif"), "UNCERTAINTY": str(tmp_path / "unc.tif")}, feedback)
    assert os.path.samefile(result["OUTPUT"], tmp_path / "sr.tif")
    assert os.path.samefile(result["UNCERTAINTY"], tmp_path / "unc.tif")
    assert progress and max(progress) == pytest.approx(100.0)
    lr = QgsRasterLayer(frames[0], "lr", "gdal")
    for path in (result["OUTPUT"], result["UNCERTAINTY"]):
        layer = QgsRasterLayer(path, "out", "gdal")
        assert layer.isValid()
        assert layer.crs() == lr.crs()
        assert layer.extent() == lr.extent()
        assert layer.rasterUnitsPerPixelX() == pytest.approx(lr.rasterUnitsPerPixelX() / 3)
        assert layer.rasterUnitsPerPixelY() == pytest.approx(lr.rasterUnitsPerPixelY() / 3)
        assert (layer.width(), layer.height()) == (lr.width() * 3, lr.height() * 3)


def test_outputs_loaded_by_processing_are_styled_and_exportable(iface, processing_ready, engine, project,
                                                                tmp_path, sample_frames):
    """From the Toolbox, Processing loads the outputs: they get the plugin's styles."""
    import processing
    plugin = qgis_misr.classFactory(iface)
    plugin.initGui()
    try:
        _run_and_check_loaded_outputs(processing, plugin, iface, project, tmp_path)
    finally:
        plugin.unload()


def _run_and_check_loaded_outputs(processing, plugin, iface, project, tmp_path):
    from qgis.core import QgsSingleBandGrayRenderer, QgsSingleBandPseudoColorRenderer
    sample = crop_sample(tmp_path / "sample", 3)
    frames = [str(sample / f"frame_{i:02d}.tif") for i in range(1, 4)]
    result = processing.runAndLoadResults(
        "misr:superresolve", {"FRAMES": frames, "TILE_SIZE": 48, "DEVICE": 1,
                              "OUTPUT": str(tmp_path / "sr.tif"), "UNCERTAINTY": str(tmp_path / "unc.tif")},
        feedback=QgsProcessingFeedback())
    layers = {layer.customProperty("misr/role", ""): layer for layer in project.mapLayers().values()}
    assert set(layers) == {"sr", "uncertainty"}, result
    assert isinstance(layers["sr"].renderer(), QgsSingleBandGrayRenderer)
    assert isinstance(layers["uncertainty"].renderer(), QgsSingleBandPseudoColorRenderer)
    assert layers["uncertainty"].renderer().opacity() == pytest.approx(0.6)
    # and the plugin offers its COG export in their context menu
    registered = {layer_id for action, layer_id in iface.layer_actions if action is plugin.export_action}
    assert registered == {layers["sr"].id(), layers["uncertainty"].id()}


def test_algorithm_rejects_mismatched_frames_before_running(provider, tmp_path):
    a = make_raster(tmp_path / "a.tif")
    b = make_raster(tmp_path / "b.tif", pixel=10.0, width=90, height=60)
    with pytest.raises(QgsProcessingException, match="pixel size 10 x 10 differs from 30 x 30"):
        _run({"FRAMES": [a, b], "OUTPUT": str(tmp_path / "sr.tif"), "UNCERTAINTY": str(tmp_path / "u.tif")})
    assert sorted(os.listdir(tmp_path)) == ["a.tif", "b.tif"]


def test_algorithm_fails_with_the_engines_one_line_error(provider, tmp_path):
    """The engine is a stand-in here (the real one's errors are tested in the engine's tests):
    what matters is that its one-line message becomes the QgsProcessingException."""
    script = tmp_path / "misr"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent("""
        import json, sys
        print(json.dumps({"event": "error", "message": "a.tif: no clear pixel in any frame"}), flush=True)
        print("misr: error: a.tif: no clear pixel in any frame", file=sys.stderr)
        sys.exit(2)
    """))
    script.chmod(0o755)
    a, b = make_raster(tmp_path / "a.tif"), make_raster(tmp_path / "b.tif")
    with pytest.raises(QgsProcessingException, match=r"^MISR engine: a.tif: no clear pixel in any frame$"):
        _run({"FRAMES": [a, b], "ENGINE": str(script), "OUTPUT": str(tmp_path / "sr.tif"),
              "UNCERTAINTY": str(tmp_path / "u.tif")})


def test_canceling_the_algorithm_terminates_the_engine_and_leaves_no_files(provider, engine, tmp_path,
                                                                         sample_frames):
    sample = crop_sample(tmp_path / "sample", 9)
    frames = [str(sample / f"frame_{i:02d}.tif") for i in range(1, 10)]
    out = tmp_path / "out"
    out.mkdir()
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda value: feedback.cancel())
    with pytest.raises(QgsProcessingException, match="Canceled"):
        _run({"FRAMES": frames, "TILE_SIZE": 16, "DEVICE": 1, "OUTPUT": str(out / "sr.tif"),
              "UNCERTAINTY": str(out / "unc.tif")}, feedback)
    assert os.listdir(out) == []
