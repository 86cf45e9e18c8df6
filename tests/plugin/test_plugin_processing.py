"""The Processing algorithm misr:superresolve with the real engine on the sample, as the Toolbox,
the modeler, batch mode and qgis_process run it (through processing.run)."""

from __future__ import annotations

import copy
import os
import re
import sys
import textwrap

import pytest

pytest.importorskip("qgis.core")

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
)

import qgis_misr  # noqa: E402
from .engine_stub import ANALYST_OPTIONS, NEW_MODELS_ANSWER, fake_engine, writes_outputs  # noqa: E402
from .plugin_support import crop_sample, off_grid_sample  # noqa: E402


def _run(parameters, feedback=None):
    import processing
    context = QgsProcessingContext()
    return processing.run("misr:superresolve", parameters, feedback=feedback or QgsProcessingFeedback(),
                          context=context)


def test_algorithm_is_registered_with_its_parameters(provider):
    algorithm = QgsApplication.processingRegistry().algorithmById("misr:superresolve")
    assert algorithm is not None and provider.name() == "MISR"
    names = [p.name() for p in algorithm.parameterDefinitions()]
    for name in ("FRAMES", "MASKS", "BAND", "MODEL", "WEIGHTS", "TTF_STEPS", "DEVICE", "TILE_SIZE", "ALIGN",
                 "SENSOR_MTF", "OUTPUT", "UNCERTAINTY", "KERNELS"):
        assert name in names
    assert algorithm.parameterDefinition("ALIGN").defaultValue() is False
    assert algorithm.parameterDefinition("FRAMES").layerType() == 3  # raster
    assert algorithm.parameterDefinition("MASKS").flags() & 8  # optional
    assert algorithm.parameterDefinition("OUTPUT").type() == "rasterDestination"
    assert algorithm.parameterDefinition("UNCERTAINTY").type() == "rasterDestination"
    assert {o.name() for o in algorithm.outputDefinitions()} == {"OUTPUT", "UNCERTAINTY", "KERNELS"}


def test_model_is_checked_against_the_engines_models(provider, tmp_path, make_raster):
    """MODEL takes an engine model's name or label ('' = its default, a number = the former
    enum's index); anything else is refused in one line that lists what the engine offers."""
    engine = str(fake_engine(tmp_path / "engine", run_body=writes_outputs()))
    frames = [make_raster(tmp_path / f"{name}.tif") for name in "abc"]
    base = {"FRAMES": frames, "ENGINE": engine, "OUTPUT": str(tmp_path / "sr.tif"),
            "UNCERTAINTY": str(tmp_path / "unc.tif")}
    with pytest.raises(QgsProcessingException, match=r"^Model: this engine has no model 'deepsum'; it offers: "
                                                     r"piunet \(PIUnet\), fixednet \(FixedNet\)$"):
        _run(dict(base, MODEL="deepsum"))
    for value, model in (("", "piunet"), ("FixedNet", "fixednet"), (0, "piunet"), ("1", "fixednet")):
        feedback = RecordingFeedback()
        result = _run(dict(base, MODEL=value), feedback)
        [command] = feedback.texts("command")
        assert command.split()[command.split().index("--model") + 1] == model, value
        assert os.path.samefile(result["OUTPUT"], tmp_path / "sr.tif")
        assert "frame b.tif is fully cloudy: dropped" in feedback.texts("warning")
    with pytest.raises(QgsProcessingException, match="^Test-time fine-tuning: FixedNet is not fine-tunable.$"):
        _run(dict(base, MODEL="fixednet", TTF_STEPS=5))
    with pytest.raises(QgsProcessingException, match=r"^Tile size 20: must be at least 24 pixels"):
        _run(dict(base, TILE_SIZE=20))
    for stated in (0.15, "0.15"):  # a number, as earlier versions took, or text
        assert _sensor_mtf_passed(dict(base, SENSOR_MTF=stated)) == ["0.15"], stated
    with pytest.raises(QgsProcessingException, match=r"^Sensor MTF 0.7: must be between 0.02 and 0.6"):
        _run(dict(base, SENSOR_MTF=0.7))
    with pytest.raises(QgsProcessingException, match=r"^Sensor MTF: 2 values for 1 band; give one value"):
        _run(dict(base, SENSOR_MTF="0.3 0.25"))
    with pytest.raises(QgsProcessingException, match=r"^Sensor MTF 'sharp': give one value for every band"):
        _run(dict(base, SENSOR_MTF="sharp"))


def test_a_date_to_show_is_one_of_the_frames_and_is_passed(provider, tmp_path, make_raster):
    """REFERENCE_FRAME (advanced): one of FRAMES reaches ``--reference-frame``; another raster is
    refused in one line; empty passes nothing."""
    engine = str(fake_engine(tmp_path / "engine", run_body=writes_outputs()))
    frames = [make_raster(tmp_path / f"{name}.tif") for name in "acd"]
    base = {"FRAMES": frames, "ENGINE": engine, "OUTPUT": str(tmp_path / "sr.tif")}
    algorithm = QgsApplication.processingRegistry().algorithmById("misr:superresolve")
    assert algorithm.parameterDefinition("REFERENCE_FRAME").flags() & 8  # optional
    for parameters, passed in ((base, None), (dict(base, REFERENCE_FRAME=frames[1]), frames[1])):
        feedback = RecordingFeedback()
        _run(parameters, feedback)
        [command] = feedback.texts("command")
        words = command.split()
        assert (words[words.index("--reference-frame") + 1] if "--reference-frame" in words else None) == \
            (os.path.abspath(passed) if passed else None)
    other = make_raster(tmp_path / "other.tif")
    with pytest.raises(QgsProcessingException, match="^Surface shown: the frame of that date is not among"):
        _run(dict(base, REFERENCE_FRAME=other))


def test_keeping_noisy_frames_is_an_advanced_switch_passed_only_when_on(provider, tmp_path, make_raster):
    engine = str(fake_engine(tmp_path / "engine", run_body=writes_outputs()))
    base = {"FRAMES": [make_raster(tmp_path / f"{name}.tif") for name in "acd"], "ENGINE": engine,
            "OUTPUT": str(tmp_path / "sr.tif")}
    algorithm = QgsApplication.processingRegistry().algorithmById("misr:superresolve")
    definition = algorithm.parameterDefinition("KEEP_NOISY_FRAMES")
    assert definition.defaultValue() is False and definition.flags() & 2  # advanced
    for parameters, passed in ((base, False), (dict(base, KEEP_NOISY_FRAMES=True), True)):
        feedback = RecordingFeedback()
        _run(parameters, feedback)
        [command] = feedback.texts("command")
        assert ("--keep-noisy-frames" in command.split()) is passed


def _sensor_mtf_passed(parameters) -> list:
    """The values the algorithm passed to ``--sensor-mtf`` for `parameters`."""
    feedback = RecordingFeedback()
    _run(parameters, feedback)
    [command] = feedback.texts("command")
    after = command.split("--sensor-mtf ", 1)[1].split()
    return after[:next(i for i, word in enumerate(after) if word.startswith("--"))]


def test_a_multiband_run_takes_one_sensor_mtf_per_band_in_band_order(provider, tmp_path, make_raster):
    engine = str(fake_engine(tmp_path / "engine", run_body=writes_outputs(), options=ANALYST_OPTIONS))
    frames = [make_raster(tmp_path / f"{name}.tif", bands=3) for name in "abc"]
    base = {"FRAMES": frames, "ENGINE": engine, "OUTPUT": str(tmp_path / "sr.tif"), "BANDS": "3,1"}
    assert _sensor_mtf_passed(dict(base, SENSOR_MTF="0.3; 0.25")) == ["0.3", "0.25"]
    assert _sensor_mtf_passed(dict(base, SENSOR_MTF="0.3")) == ["0.3"]  # one value for every band
    with pytest.raises(QgsProcessingException, match=r"^Sensor MTF: 3 values for 2 bands; give one value"):
        _run(dict(base, SENSOR_MTF="0.3 0.25 0.2"))


def test_weights_are_a_file_or_the_name_of_shipped_weights_and_kernels_need_fine_tuning(
        provider, tmp_path, make_raster):
    answer = copy.deepcopy(NEW_MODELS_ANSWER)
    for option in answer["models"][0]["weights_options"]:  # shipped files that exist
        option["weights"] = str(tmp_path / os.path.basename(option["weights"]))
        open(option["weights"], "wb").close()
    engine = str(fake_engine(tmp_path / "engine", models=answer, run_body=writes_outputs()))
    frames = [make_raster(tmp_path / f"{name}.tif") for name in "abc"]
    base = {"FRAMES": frames, "ENGINE": engine, "OUTPUT": str(tmp_path / "sr.tif"),
            "UNCERTAINTY": str(tmp_path / "unc.tif"), "KERNELS": str(tmp_path / "k.json")}
    adapted = tmp_path / "adapted.safetensors"
    adapted.write_bytes(b"")
    ssl = str(tmp_path / "piunet_ssl.safetensors")
    for value, expected in (("self-supervised", ssl), (str(adapted), str(adapted)),
                            ("supervised", None), ("", None)):
        feedback = RecordingFeedback()
        _run(dict(base, WEIGHTS=value), feedback)
        [command] = feedback.texts("command")
        words = command.split()
        assert (words[words.index("--weights") + 1] if "--weights" in words else None) == expected, value
        assert "--kernels-out" not in words  # no fine-tuning, no kernels
    feedback = RecordingFeedback()
    _run(dict(base, TTF_STEPS=4), feedback)
    [command] = feedback.texts("command")
    assert command.split()[command.split().index("--kernels-out") + 1] == str(tmp_path / "k.json")
    with pytest.raises(QgsProcessingException, match="^Weights: file .*nothing.safetensors not found"):
        _run(dict(base, WEIGHTS=str(tmp_path / "nothing.safetensors")))


def test_model_parameter_offers_the_last_probed_models_without_starting_the_engine(provider, tmp_path):
    from qgis_misr import settings
    from qgis_misr.core.engine import EngineLocation
    settings.probe(EngineLocation((str(fake_engine(tmp_path / "engine")),), "test"))
    assert settings.known_models() == ["piunet", "fixednet"]
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("misr:superresolve")
    model = algorithm.parameterDefinition("MODEL")
    assert model.type() == "string" and model.defaultValue() == ""
    assert model.metadata()["widget_wrapper"]["value_hints"] == ["piunet", "fixednet"]
    weights = algorithm.parameterDefinition("WEIGHTS")
    assert weights.metadata()["widget_wrapper"]["value_hints"] == ["self-supervised", "supervised"]


@pytest.mark.slow
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


@pytest.mark.slow
def test_an_area_of_the_sample_is_super_resolved_alone(provider, engine, tmp_path, sample_frames):
    """EXTENT (any CRS Processing offers; here the frames'): the output covers the frames' pixels
    that area touches, x3 finer, and nothing else."""
    sample = crop_sample(tmp_path / "sample", 4)
    frames = [str(sample / f"frame_{i:02d}.tif") for i in range(1, 5)]
    lr = QgsRasterLayer(frames[0], "lr", "gdal")
    full = lr.extent()
    area = f"{full.xMinimum() + 100},{full.xMinimum() + 700},{full.yMaximum() - 620},{full.yMaximum() - 40} " \
           f"[{lr.crs().authid()}]"
    result = _run({"FRAMES": frames, "TILE_SIZE": 48, "DEVICE": 1, "EXTENT": area,
                   "OUTPUT": str(tmp_path / "sr.tif"), "UNCERTAINTY": str(tmp_path / "unc.tif")})
    for path in (result["OUTPUT"], result["UNCERTAINTY"]):
        layer = QgsRasterLayer(path, "out", "gdal")
        assert layer.isValid() and layer.crs() == lr.crs()
        extent = layer.extent()  # 30 m pixels: columns 3-23 (90-720 m), rows 1-20 (30-630 m) from the corner
        assert (extent.xMinimum(), extent.xMaximum()) == (full.xMinimum() + 90, full.xMinimum() + 720)
        assert (extent.yMinimum(), extent.yMaximum()) == (full.yMaximum() - 630, full.yMaximum() - 30)
        assert (layer.width(), layer.height()) == (3 * 21, 3 * 20)


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


def test_algorithm_rejects_mismatched_frames_before_running(provider, tmp_path, make_raster):
    a = make_raster(tmp_path / "a.tif")
    b = make_raster(tmp_path / "b.tif", pixel=10.0, width=90, height=60)
    with pytest.raises(QgsProcessingException, match="pixel size 10 x 10 differs from 30 x 30"):
        _run({"FRAMES": [a, b], "OUTPUT": str(tmp_path / "sr.tif"), "UNCERTAINTY": str(tmp_path / "u.tif")})
    assert sorted(os.listdir(tmp_path)) == ["a.tif", "b.tif"]


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps what the algorithm reports: (kind, text) for commands, infos and warnings."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def pushCommandInfo(self, text):  # noqa: N802
        self.lines.append(("command", text))
        super().pushCommandInfo(text)

    def pushInfo(self, text):  # noqa: N802
        self.lines.append(("info", text))
        super().pushInfo(text)

    def pushWarning(self, text):  # noqa: N802
        self.lines.append(("warning", text))
        super().pushWarning(text)

    def setProgressText(self, text):  # noqa: N802
        self.lines.append(("progress", text))
        super().setProgressText(text)

    def texts(self, kind):
        return [text for line_kind, text in self.lines if line_kind == kind]


def test_the_progress_text_counts_the_time_while_the_engine_prepares(provider, tmp_path, make_raster):
    """The engine holds its fraction while it registers the frames (one registration can take a
    minute on a whole tile): the progress text still says every second how long it has run."""
    preparing = """
        import time
        print(json.dumps({"event": "progress", "fraction": 0.0, "message": "registering the frames"}), flush=True)
        time.sleep(2.6)
    """
    engine = str(fake_engine(tmp_path / "engine", run_body=preparing + writes_outputs()))
    frames = [make_raster(tmp_path / f"{name}.tif") for name in "abc"]
    feedback = RecordingFeedback()
    _run({"FRAMES": frames, "ENGINE": engine, "OUTPUT": str(tmp_path / "sr.tif"),
          "UNCERTAINTY": str(tmp_path / "unc.tif")}, feedback)
    texts = feedback.texts("progress")
    assert any(re.fullmatch(r"registering the frames \([12] s elapsed\)", text) for text in texts), texts


@pytest.mark.slow
def test_align_resamples_an_off_grid_frame_of_the_sample(provider, engine, tmp_path, sample_frames):
    """frame_02 and mask_02 on another grid: refused before any run without ALIGN (with the
    option to tick), resampled by the engine onto frame_01's grid with ALIGN."""
    sample = off_grid_sample(tmp_path / "sample", 4)
    parameters = {"FRAMES": [str(sample / f"frame_{i:02d}.tif") for i in range(1, 5)],
                  "MASKS": [str(sample / f"mask_{i:02d}.tif") for i in range(1, 5)],
                  "TILE_SIZE": 48, "DEVICE": 1, "OUTPUT": str(tmp_path / "sr.tif"),
                  "UNCERTAINTY": str(tmp_path / "unc.tif")}
    with pytest.raises(QgsProcessingException, match=r"^Frame frame_02: size 44x44 differs from 48x48.*"
                                                     r"\(frame frame_01\)\. Tick .* to resample it\.$"):
        _run(parameters)
    assert not (tmp_path / "sr.tif").exists()
    feedback = RecordingFeedback()
    result = _run(dict(parameters, ALIGN=True), feedback)
    [command] = feedback.texts("command")
    assert command.split().count("--align") == 1
    assert any(text.startswith("Frame frame_02:") and "will be resampled" in text for text in feedback.texts("info"))
    assert any("1 frame(s) and 1 mask(s) resampled" in text for text in feedback.texts("warning"))
    lr = QgsRasterLayer(parameters["FRAMES"][0], "lr", "gdal")
    sr = QgsRasterLayer(result["OUTPUT"], "sr", "gdal")
    assert sr.isValid() and sr.crs() == lr.crs() and sr.extent() == lr.extent()
    assert (sr.width(), sr.height()) == (3 * lr.width(), 3 * lr.height())


@pytest.mark.slow
def test_frames_of_other_footprints_on_one_pixel_grid_run_without_align(provider, engine, tmp_path, sample_frames):
    """Landsat scenes of one path and row share a 30 m grid, each with its own extent: the real
    engine reads them as they are (no ALIGN, nothing resampled), and the run says so."""
    parameters = {"FRAMES": [], "MASKS": [], "TILE_SIZE": 48, "DEVICE": 1, "OUTPUT": str(tmp_path / "sr.tif"),
                  "UNCERTAINTY": str(tmp_path / "unc.tif")}
    for index in range(4):  # 48 x 48 windows of the sample, each 2 columns and 1 row further
        folder = crop_sample(tmp_path / f"scene{index}", 4, offset=(51 + 2 * index, 51 + index))
        parameters["FRAMES"].append(str(folder / f"frame_{index + 1:02d}.tif"))
        parameters["MASKS"].append(str(folder / f"mask_{index + 1:02d}.tif"))
    feedback = RecordingFeedback()
    result = _run(parameters, feedback)
    assert "--align" not in feedback.texts("command")[0].split()
    assert any(text.startswith("frame_02, frame_03, frame_04: their own footprints on the pixel grid of frame "
                               "frame_01, whole pixels off it: read as they are") for text in feedback.texts("info")), \
        feedback.lines
    lr = QgsRasterLayer(parameters["FRAMES"][0], "lr", "gdal")
    sr = QgsRasterLayer(result["OUTPUT"], "sr", "gdal")
    assert sr.isValid() and sr.extent() == lr.extent() and (sr.width(), sr.height()) == (144, 144)


@pytest.mark.slow
def test_the_engine_itself_refuses_an_off_grid_frame_without_align(engine, tmp_path, sample_frames):
    """What the plugin's validation stops early, the real engine refuses with one line naming
    the file and --align."""
    from qgis_misr.core.command import build_command
    from qgis_misr.core.params import FrameInput, RunParameters
    from qgis_misr.core.runner import run_engine
    from qgis_misr.layers import raster_info
    sample = off_grid_sample(tmp_path / "sample", 2)
    layers = [QgsRasterLayer(str(sample / f"frame_{i:02d}.tif"), f"frame_{i:02d}", "gdal") for i in (1, 2)]
    params = RunParameters(frames=[FrameInput(raster_info(layer)) for layer in layers], device="cpu",
                           output=str(tmp_path / "sr.tif"), write_uncertainty=False)
    result = run_engine(build_command(engine.argv, params), [params.output])
    assert not result.ok and "\n" not in result.error
    assert result.error.startswith(f"{sample / 'frame_02.tif'}: not on the grid of {sample / 'frame_01.tif'}")
    assert result.error.endswith("pass --align to resample it onto that grid")
    assert not (tmp_path / "sr.tif").exists()


def test_algorithm_fails_with_the_engines_one_line_error(provider, tmp_path, make_raster):
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


@pytest.mark.slow
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


def test_loaded_outputs_get_their_own_statistics_their_legend_and_a_new_group_on_top(
        iface, processing_ready, project, tmp_path, make_raster):
    """Processing adds its outputs where the user last clicked (here: inside the previous run's
    group) and builds their legend before the plugin styles them: the plugin moves them into a
    new group at the top, and the legend the layer tree shows is the restyled one (its own
    range, not the style file's 0-1)."""
    import processing
    from qgis.core import QgsLayerTreeGroup, QgsLayerTreeModel, QgsLayerTreeRegistryBridge
    from .engine_stub import writes_rasters
    plugin = qgis_misr.classFactory(iface)
    plugin.initGui()
    try:
        root = project.layerTreeRoot()
        previous = root.insertGroup(0, "MISR previous run")
        project.layerTreeRegistryBridge().setLayerInsertionPoint(
            QgsLayerTreeRegistryBridge.InsertionPoint(previous, 0))
        model = QgsLayerTreeModel(root)  # like the layer tree panel: legends built when layers arrive
        engine = str(fake_engine(tmp_path / "engine", run_body=writes_rasters(frames_used=2)))
        frames = [make_raster(tmp_path / f"{name}.tif") for name in "abc"]
        processing.runAndLoadResults("misr:superresolve", {
            "FRAMES": frames, "ENGINE": engine, "OUTPUT": str(tmp_path / "sr.tif"),
            "UNCERTAINTY": str(tmp_path / "unc.tif")}, feedback=QgsProcessingFeedback())
        top = root.children()[0]
        assert isinstance(top, QgsLayerTreeGroup) and top.name().startswith("MISR PIUnet a..c (2 of 3 frames) ")
        assert [layer.customProperty("misr/role") for layer in (n.layer() for n in top.findLayers())] == \
            ["uncertainty", "sr"]
        assert previous.findLayers() == []
        uncertainty = top.findLayers()[0].layer()
        renderer = uncertainty.renderer()
        assert (renderer.classificationMin(), renderer.classificationMax()) == pytest.approx((5.9, 49.1), abs=0.2)
        legend = model.layerLegendNodes(top.findLayers()[0])[-1]
        legend_settings = legend.settings()  # keep it: numericFormat() points into it
        assert legend.ramp().color1().name() == "#440154"  # the style's ramp, not the grey default
        assert legend_settings.numericFormat().numberDecimalPlaces() == 1  # the rescaled legend
        for layer in (n.layer() for n in top.findLayers()):
            assert layer.customProperty("misr/run") == top.name()
    finally:
        _delete_model(locals().get("model"))
        project.layerTreeRegistryBridge().setLayerInsertionPoint(  # not into a group about to go
            QgsLayerTreeRegistryBridge.InsertionPoint(project.layerTreeRoot(), 0))
        plugin.unload()


def _delete_model(model) -> None:
    """Delete a layer tree model now: one left to the garbage collector crashes a later test."""
    from qgis.PyQt import sip
    if model is not None and not sip.isdeleted(model):
        sip.delete(model)


def test_restyling_a_layer_already_in_the_layer_tree_refreshes_its_legend(qgis_app, project, tmp_path):
    """The legend the layer tree shows for an uncertainty layer that was added before it was
    styled (as Processing does) is rebuilt from the new range, not left at the style file's."""
    import numpy as np
    from qgis.core import QgsLayerTreeModel
    from qgis_misr.layers import UNCERTAINTY_STYLE, style_uncertainty_layer
    from qgis_misr.resources import style_path
    from tests.rasters import make_raster
    from osgeo import gdal
    values = np.linspace(5.0, 50.0, 600, dtype=np.float32).reshape(1, 20, 30)
    path = str(make_raster(tmp_path / "unc.tif", values, gdal.GDT_Float32, (500000.0, 10.0, 0.0, 4e6, 0.0, -10.0), 32618))
    model = QgsLayerTreeModel(project.layerTreeRoot())
    try:
        layer = QgsRasterLayer(path, "uncertainty", "gdal")
        layer.loadNamedStyle(style_path(UNCERTAINTY_STYLE))  # Processing's default style: the file's range
        project.addMapLayer(layer)
        node = project.layerTreeRoot().findLayer(layer.id())
        before = model.layerLegendNodes(node)[-1].settings()
        assert before.numericFormat().numberDecimalPlaces() == 6
        low, high = style_uncertainty_layer(layer)
        assert 5.0 <= low < high <= 50.0
        after = model.layerLegendNodes(node)[-1].settings()
        assert after.numericFormat().numberDecimalPlaces() == 1
    finally:
        _delete_model(model)


@pytest.mark.slow
def test_the_real_engine_offers_deepsum_and_the_algorithm_runs_it(provider, engine, tmp_path, sample_frames):
    """DeepSUM is offered because the engine reports it (no plugin code names it), under its
    label, and runs on real frames with its uncertainty."""
    from qgis_misr import settings
    caps = settings.probe(engine, refresh=True)
    assert caps.model("deepsum").label == "DeepSUM" and "deepsum" in settings.known_models()
    sample = crop_sample(tmp_path / "sample", 4, size=24)
    result = _run({"FRAMES": [str(sample / f"frame_{i:02d}.tif") for i in range(1, 5)],
                   "MASKS": [str(sample / f"mask_{i:02d}.tif") for i in range(1, 5)], "MODEL": "DeepSUM",
                   "TILE_SIZE": 24, "DEVICE": 1, "OUTPUT": str(tmp_path / "sr.tif"),
                   "UNCERTAINTY": str(tmp_path / "unc.tif")})
    for path in (result["OUTPUT"], result["UNCERTAINTY"]):
        layer = QgsRasterLayer(path, "out", "gdal")
        assert layer.isValid() and (layer.width(), layer.height()) == (72, 72)
