"""Processing's batch mode with misr:superresolve, headless: the loop of QGIS's batch dialog
(processing/gui/BatchAlgorithmDialog.runAlgorithm: per row, preprocessParameters, a new context,
algorithm.run with a BatchFeedback, then handleAlgorithmResults loading the outputs), on rows of
the sample with the real engine, one row failing in the middle. And misr:batch, which runs a
manifest with `misr batch` (a stand-in engine: the command and the events)."""

from __future__ import annotations

import os
import re

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
from .test_plugin_processing import RecordingFeedback as ProcessingFeedback  # noqa: E402


class RecordingFeedback(ProcessingFeedback):
    """Also keeps the errors reported (each bad row of a manifest is one)."""

    def reportError(self, error, fatalError=False):  # noqa: N802
        self.lines.append(("error", error))
        super().reportError(error, fatalError)


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


def batch_engine(folder, body: str):
    """A stand-in engine whose `misr batch` prints `body`'s events (Python, json and sys imported)."""
    from .engine_stub import fake_engine
    return str(fake_engine(folder, run_body=body))


def test_the_manifest_algorithm_runs_misr_batch_and_reports_its_events(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingContext
    manifest = tmp_path / "scenes.csv"
    manifest.write_text("id,frames\na,a/*.tif\n")
    engine = batch_engine(tmp_path / "engine", """
        assert args[:2] == ["batch", sys.argv[2]] and "--progress" in args
        print(json.dumps({"event": "start", "scenes": 2, "to_run": 1, "skipped": 1, "invalid": 0, "workers": 2}))
        print(json.dumps({"event": "log", "message": "dashboard: http://127.0.0.1:8787/status"}))
        print(json.dumps({"event": "warning", "message": "scene a: frame_01.tif: fully cloudy or nodata, dropped"}))
        print(json.dumps({"event": "progress", "fraction": 1.0, "message": "1/1 scenes (scene a: done)"}))
        print(json.dumps({"event": "done", "summary": "2 scenes: 1 done, 1 skipped", "report": "/r/scenes_report.csv"}))
        print(" ".join(args), file=sys.stderr)
    """)
    feedback = RecordingFeedback()
    result = processing.run("misr:batch", {"MANIFEST": str(manifest), "OUTPUT_FOLDER": str(tmp_path / "out"),
                                           "DEVICE": 1, "OVERWRITE": True, "WORKERS": 3, "ENGINE": engine},
                            feedback=feedback, context=QgsProcessingContext())
    assert result["REPORT"] == "/r/scenes_report.csv"
    [command] = feedback.texts("command")
    assert command.split()[1:] == ["batch", str(manifest), "--progress", "json", "--device", "cpu",
                                   "-o", str(tmp_path / "out"), "--overwrite", "--workers", "3"]
    assert "1 of 2 scenes to run on 2 Dask worker(s); 1 already done" in feedback.texts("info")
    assert "2 scenes: 1 done, 1 skipped" in feedback.texts("info")
    assert feedback.texts("warning") == ["scene a: frame_01.tif: fully cloudy or nodata, dropped"]


def test_the_manifest_algorithms_progress_text_counts_the_time_between_scenes(provider, tmp_path):
    """A scene takes minutes and `misr batch` reports scenes: the progress text still moves every second."""
    import processing
    from qgis.core import QgsProcessingContext
    manifest = tmp_path / "scenes.csv"
    manifest.write_text("id,frames\na,a/*.tif\n")
    engine = batch_engine(tmp_path / "engine", """
        import time
        print(json.dumps({"event": "start", "scenes": 2, "to_run": 2, "skipped": 0, "invalid": 0, "workers": 1}), flush=True)
        print(json.dumps({"event": "progress", "fraction": 0.5, "message": "1/2 scenes (scene a: done)"}), flush=True)
        time.sleep(2.6)
        print(json.dumps({"event": "done", "summary": "2 scenes: 2 done", "report": "/r/scenes_report.csv"}))
    """)
    feedback = RecordingFeedback()
    processing.run("misr:batch", {"MANIFEST": str(manifest), "OUTPUT_FOLDER": str(tmp_path / "out"), "DEVICE": 1,
                                  "ENGINE": engine}, feedback=feedback, context=QgsProcessingContext())
    texts = feedback.texts("progress")
    assert any(re.fullmatch(r"1/2 scenes \(scene a: done\) \([12] s elapsed\)", text)
               for text in texts), texts


def test_the_manifest_algorithm_fails_with_the_engines_summary(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingException
    manifest = tmp_path / "scenes.csv"
    manifest.write_text("id,frames\na,a/*.tif\n")
    engine = batch_engine(tmp_path / "engine", """
        print(json.dumps({"event": "error", "message": "scenes.csv:2: scene a: frames: 'a/*.tif' matches no file"}))
        print(json.dumps({"event": "error", "message": "scenes.csv: 1 invalid row(s); nothing was run"}))
        print("misr: error: scenes.csv: 1 invalid row(s); nothing was run", file=sys.stderr)
        sys.exit(2)
    """)
    feedback = RecordingFeedback()
    with pytest.raises(QgsProcessingException, match=r"^MISR engine: scenes.csv: 1 invalid row\(s\); nothing was run$"):
        processing.run("misr:batch", {"MANIFEST": str(manifest), "ENGINE": engine}, feedback=feedback,
                       context=QgsProcessingContext())
    assert "scenes.csv:2: scene a: frames: 'a/*.tif' matches no file" in feedback.texts("error")


@pytest.mark.slow
def test_the_manifest_algorithm_runs_a_real_manifest_and_again_skips_it(provider, engine, tmp_path, sample_frames):
    import processing
    from qgis.core import QgsProcessingContext
    for index, offset in enumerate([(10, 10), (60, 60)]):
        crop_sample(tmp_path / f"scene{index}", 3, size=24, offset=offset)
    manifest = tmp_path / "scenes.csv"
    manifest.write_text("id,frames,masks,tile_size\n" + "".join(
        f"scene{i},scene{i}/frame_*.tif,scene{i}/mask_*.tif,16\n" for i in (0, 1)))
    (tmp_path / "out").mkdir()
    parameters = {"MANIFEST": str(manifest), "OUTPUT_FOLDER": str(tmp_path / "out"), "DEVICE": 1, "WORKERS": 1}
    feedback = RecordingFeedback()
    result = processing.run("misr:batch", parameters, feedback=feedback, context=QgsProcessingContext())
    assert result["REPORT"] == str(tmp_path / "out" / "scenes_report.csv")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tif")) == ["scene0_sr.tif", "scene1_sr.tif"]
    assert any("2 scenes: 2 done" in text for text in feedback.texts("info"))
    again = RecordingFeedback()
    processing.run("misr:batch", parameters, feedback=again, context=QgsProcessingContext())
    assert any("2 scenes: 0 done, 2 skipped" in text for text in again.texts("info"))
