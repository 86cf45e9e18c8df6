"""Processing's batch mode with misr:superresolve, headless: the loop of QGIS's batch dialog
(processing/gui/BatchAlgorithmDialog.runAlgorithm: per row, preprocessParameters, a new context,
algorithm.run with a BatchFeedback, then handleAlgorithmResults loading the outputs), on rows of
the sample with the real engine, one row failing in the middle."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("qgis.core")

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsRasterLayer,
)

import qgis_misr  # noqa: E402
from .plugin_support import crop_sample  # noqa: E402


def run_as_batch_dialog(rows: list[dict]) -> tuple[list[dict], list[list[str]]]:
    """Each row as the batch dialog runs it; (results of the rows that worked, errors of each row)."""
    from processing.gui.BatchAlgorithmDialog import BatchFeedback
    from processing.gui.Postprocessing import handleAlgorithmResults
    from processing.tools import dataobjects

    algorithm = QgsApplication.processingRegistry().createAlgorithmById("misr:superresolve")
    feedback = QgsProcessingFeedback()
    steps = BatchFeedback(len(rows), feedback)
    results, errors = [], []
    for count, parameters in enumerate(rows):
        steps.setCurrentStep(count)
        parameters = algorithm.preprocessParameters(parameters)
        context = dataobjects.createContext(feedback)  # a new context a row, as the dialog does
        steps.errors = []
        result, ok = algorithm.run(parameters, context, steps)
        errors.append(list(steps.errors))
        if ok:
            results.append(result)
            handleAlgorithmResults(algorithm, context, steps, False, parameters)
    return results, errors


@pytest.mark.slow
def test_batch_mode_runs_every_row_loads_and_styles_each_output_and_survives_a_bad_row(
        iface, processing_ready, engine, project, tmp_path, sample_frames):
    plugin = qgis_misr.classFactory(iface)
    plugin.initGui()
    try:
        rows = []
        for index, offset in enumerate([(10, 10), (60, 60), (90, 30)]):
            scene = crop_sample(tmp_path / f"scene{index}", 3, size=24, offset=offset)
            out = tmp_path / f"out{index}"
            out.mkdir()
            rows.append({"FRAMES": [str(scene / f"frame_{i:02d}.tif") for i in (1, 2, 3)],
                         "MASKS": [str(scene / f"mask_{i:02d}.tif") for i in (1, 2, 3)],
                         "TILE_SIZE": 16, "DEVICE": 1,
                         "OUTPUT": QgsProcessingOutputLayerDefinition(str(out / "sr.tif"), project),
                         "UNCERTAINTY": QgsProcessingOutputLayerDefinition(str(out / "unc.tif"), project)})
        rows[1]["MASKS"] = rows[1]["MASKS"][:2]  # two masks for three frames: this row fails alone
        results, errors = run_as_batch_dialog(rows)
    finally:
        plugin.unload()
    assert [bool(e) for e in errors] == [False, True, False]
    assert any("2 masks for 3 frames" in text for text in errors[1]), errors[1]
    assert [os.path.dirname(r["OUTPUT"]) for r in results] == [str(tmp_path / "out0"), str(tmp_path / "out2")]
    assert sorted(os.listdir(tmp_path / "out1")) == []
    for result in results:
        for path in (result["OUTPUT"], result["UNCERTAINTY"]):
            layer = QgsRasterLayer(path, "out", "gdal")
            assert layer.isValid() and (layer.width(), layer.height()) == (72, 72)
    loaded = [layer for layer in project.mapLayers().values() if layer.customProperty("misr/role", "")]
    roles = sorted((layer.customProperty("misr/role"), os.path.dirname(layer.source())) for layer in loaded)
    assert roles == sorted((role, str(tmp_path / f"out{i}")) for role in ("sr", "uncertainty") for i in (0, 2))
