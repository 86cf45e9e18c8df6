"""Processing algorithm misr:superresolve: the same engine run as the dialog, for the Toolbox,
the modeler, batch mode and qgis_process."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Dict, List, Optional, Tuple

from qgis.core import (
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QIcon

from .. import settings
from ..compat import file_behavior_file, number_type_integer, parameter_flag_advanced, source_type_raster
from ..core.engine import EngineCapabilities, UnknownModel
from ..core.masks import AUTO, KINDS, LABELS
from ..core.naming import match_masks, run_name
from ..core.params import (
    ALIGN_LABEL,
    AREA_LABEL,
    AREA_TOOLTIP,
    DEFAULT_TTF_STEPS,
    KEEP_NOISY_LABEL,
    KEEP_NOISY_TOOLTIP,
    SENSOR_MTF_FORMAT,
    SENSOR_MTF_TOOLTIP,
    TTF_TOOLTIP,
    FrameInput,
    RunParameters,
    parse_sensor_mtf,
)
from ..core.run import RunError, RunReporter, check, execute, prepare_run
from ..layers import (
    move_into_group,
    raster_info,
    result_group_name,
    style_sr_layer,
    style_uncertainty_layer,
    tag_layer,
)
from ..resources import icon_path

DEVICES = ("auto", "cpu", "cuda")
MASK_KINDS = (AUTO,) + KINDS
"""The MASK_KIND enum's values, in its order."""
_POST_PROCESSORS: List["StyleOutput"] = []


class RunGroup:
    """The layer group of one run's outputs, made at the top of the layer tree when Processing
    loads the first of them (else Processing would add them where the user last clicked:
    inside the previous run's group)."""

    def __init__(self, planned_name: str, frames_used: Optional[int]):
        self.planned_name, self.frames_used = planned_name, frames_used
        self._group: Optional[QgsLayerTreeGroup] = None

    def group(self, project: QgsProject) -> QgsLayerTreeGroup:
        root = project.layerTreeRoot()
        if self._group is None or self._group not in root.children():
            name = result_group_name(project, self.planned_name, self.frames_used)
            self._group = root.insertGroup(0, name)
        return self._group


class StyleOutput(QgsProcessingLayerPostProcessorInterface):
    """Styles an output layer once Processing has loaded it, and moves it into its run's group
    (main thread)."""

    def __init__(self, role: str, run: RunGroup, sr: str, uncertainty: str,
                 reference_source: Optional[str] = None, band: int = 1):
        super().__init__()
        self.role, self.run, self.sr, self.uncertainty = role, run, sr, uncertainty
        self.reference_source, self.band = reference_source, band

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> None:
        if not isinstance(layer, QgsRasterLayer):
            return
        project = context.project()
        if self.role == "sr":
            reference = None
            for candidate in project.mapLayers().values() if project else []:
                if isinstance(candidate, QgsRasterLayer) and candidate.source() == self.reference_source:
                    reference = candidate
                    break
            style_sr_layer(layer, reference, self.band)
        else:
            style_uncertainty_layer(layer)
        name = self.run.planned_name
        if project is not None:
            group = self.run.group(project)
            move_into_group(project, layer, group, on_top=self.role == "uncertainty")
            name = group.name()
        tag_layer(layer, self.role, name, self.sr, self.uncertainty)


class FeedbackReporter(RunReporter):
    """Engine events into the Processing feedback (its error arrives as the exception)."""

    def __init__(self, feedback: QgsProcessingFeedback):
        self.feedback = feedback

    def start(self, summary: str) -> None:
        self.feedback.pushInfo(summary)

    def progress(self, fraction: float, message: str) -> None:
        self.feedback.setProgress(100.0 * fraction)
        if message:
            self.feedback.setProgressText(message)

    def status(self, text: str) -> None:
        self.feedback.setProgressText(text)

    def warning(self, message: str) -> None:
        self.feedback.pushWarning(message)

    def log(self, message: str) -> None:
        self.feedback.pushConsoleInfo(message)

    def done(self, summary: str) -> None:
        self.feedback.pushInfo(summary)


class SuperResolveAlgorithm(QgsProcessingAlgorithm):
    FRAMES = "FRAMES"
    MASKS = "MASKS"
    BAND = "BAND"
    MODEL = "MODEL"
    WEIGHTS = "WEIGHTS"
    TTF_STEPS = "TTF_STEPS"
    KERNELS = "KERNELS"
    DEVICE = "DEVICE"
    TILE_SIZE = "TILE_SIZE"
    SENSOR_MTF = "SENSOR_MTF"
    REFERENCE_FRAME = "REFERENCE_FRAME"
    KEEP_NOISY_FRAMES = "KEEP_NOISY_FRAMES"
    ALIGN = "ALIGN"
    EXTENT = "EXTENT"
    BANDS = "BANDS"
    MASK_KIND = "MASK_KIND"
    AUTO_MASK = "AUTO_MASK"
    MASK_DILATION = "MASK_DILATION"
    MASK_SNOW = "MASK_SNOW"
    MASK_DARK_AREAS = "MASK_DARK_AREAS"
    ENGINE = "ENGINE"
    OUTPUT = "OUTPUT"
    UNCERTAINTY = "UNCERTAINTY"

    def __init__(self):
        super().__init__()
        self._finished_run = None

    def name(self) -> str:
        return "superresolve"

    def displayName(self) -> str:
        return "Super-resolve a time series (x3)"

    def group(self) -> str:
        return ""

    def groupId(self) -> str:
        return ""

    def tags(self) -> List[str]:
        return ["super-resolution", "misr", "piunet", "time series", "satellite", "x3"]

    def icon(self) -> QIcon:
        return QIcon(icon_path("misr.svg"))

    def shortHelpString(self) -> str:
        return (
            "Fuses co-registered frames of one scene (single-band rasters on one grid) into one "
            "image with 3x finer pixels, and a per-pixel uncertainty (expected absolute error, "
            "in the input's units).<br><br>"
            "<b>Masks</b>: optional, one per frame, in the same order as the frames; if the order "
            "differs they are paired by name (frame_03 with mask_03). <b>Mask kind</b>: binary "
            "(nonzero = clear), Sentinel-2 SCL, Landsat QA_PIXEL or Fmask, or Auto (the engine detects "
            "it from the values). A mask with pixels a whole multiple of the frame's (a 20 m SCL "
            "beside 10 m bands) is read by nearest neighbour. <b>Snow</b> and SCL <b>dark areas</b> "
            "count as unusable on request; <b>Mask dilation</b> grows the unusable areas (-1 = the "
            "engine's default). Without masks each frame's nodata marks invalid pixels and, unless "
            "<b>Screen clouds automatically</b> is off, the engine screens clouds and shadows from the "
            "time series itself (needs 3 frames).<br>"
            "<b>Bands</b>: empty = the Band parameter; <code>all</code> or a list such as "
            "<code>4,3,2</code> super-resolves several bands with one registration into one multi-band "
            "GeoTIFF (three bands are shown in colour).<br>"
            "<b>Model</b>: a model name from <code>misr models</code> (empty = the engine's "
            "default); checked against the engine when the algorithm runs.<br>"
            "<b>Weights</b>: empty = the model's default (supervised); the name of shipped weights "
            "(<code>self-supervised</code>: trained without HR images) or a .safetensors file, e.g. "
            "written by <code>misr adapt</code> for your sensor.<br>"
            f"<b>Test-time fine-tuning steps</b>: 0 = off; only for a model and an engine that "
            f"offer it. {TTF_TOOLTIP}<br>"
            "<b>Tile size</b>: 0 = the engine's default; smaller needs less memory.<br>"
            f"<b>Sensor MTF at Nyquist</b> (advanced; empty = the engine's default): {SENSOR_MTF_TOOLTIP} "
            f"Give {SENSOR_MTF_FORMAT}.<br>"
            "<b>Show the surface of this date</b> (advanced; one of the frames, empty = the mean of the "
            "dates): where the surface changed between the dates (a harvest, a flood), the SR shows it as "
            "this frame does; where that frame is cloudy, the mean.<br>"
            f"<b>{KEEP_NOISY_LABEL}</b> (advanced, KEEP_NOISY_FRAMES): {KEEP_NOISY_TOOLTIP}<br>"
            f"<b>{AREA_LABEL}</b> (EXTENT): {AREA_TOOLTIP}<br>"
            f"<b>{ALIGN_LABEL}</b> (ALIGN): frames and masks whose CRS, pixel size, extent or "
            "size differ from the first frame's are resampled onto its grid in memory (frames "
            "bilinear, masks nearest neighbour) instead of being refused. Frames with their own extent on "
            "the first frame's pixel grid (whole pixels off it: Landsat scenes of one path and row) need "
            "nothing: the engine reads them as they are.<br><br>"
            "The work is done by the separate <code>misr</code> engine: the one set up or chosen "
            "in the plugin's dialog (in any QGIS profile and in qgis_process), else the "
            "MISR_ENGINE environment variable, the repository's .venv or the PATH, or the Engine "
            "parameter.")

    def createInstance(self) -> "SuperResolveAlgorithm":
        return SuperResolveAlgorithm()

    def initAlgorithm(self, config: Optional[Dict] = None) -> None:
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.FRAMES, "Frames (time series of one scene)", source_type_raster()))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.MASKS, "Masks (one per frame, nonzero = clear)", source_type_raster(), optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.BAND, "Band", number_type_integer(), 1, minValue=1))
        model = QgsProcessingParameterString(
            self.MODEL, "Model (empty = the engine's default)", defaultValue="", optional=True)
        known = settings.known_models()  # no subprocess here: QGIS may be starting
        if known:  # a drop-down in QGIS >= 3.24, a text box before
            model.setMetadata({"widget_wrapper": {"value_hints": known}})
        self.addParameter(model)
        weights = QgsProcessingParameterString(
            self.WEIGHTS, "Weights (empty = the model's default; the name of shipped weights such as "
            "self-supervised, or a .safetensors file, e.g. from misr adapt)", defaultValue="", optional=True)
        shipped = settings.known_weights()
        if shipped:
            weights.setMetadata({"widget_wrapper": {"value_hints": shipped}})
        self.addParameter(weights)
        self.addParameter(QgsProcessingParameterNumber(
            self.TTF_STEPS, "Test-time fine-tuning steps (0 = off)", number_type_integer(), 0,
            minValue=0, maxValue=100000))
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, "Device", options=["Auto", "CPU", "GPU (CUDA)"], defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE_SIZE, "Tile size in LR pixels (0 = engine default)", number_type_integer(), 0,
            minValue=0, maxValue=100000))
        self.addParameter(QgsProcessingParameterBoolean(self.ALIGN, ALIGN_LABEL, defaultValue=False))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, AREA_LABEL, optional=True))
        mtf = QgsProcessingParameterString(
            self.SENSOR_MTF, "Sensor MTF at Nyquist: one value, or one per band (empty = the engine's default)",
            defaultValue="", optional=True)
        mtf.setHelp(SENSOR_MTF_TOOLTIP)
        mtf.setFlags(mtf.flags() | parameter_flag_advanced())
        self.addParameter(mtf)
        reference = QgsProcessingParameterRasterLayer(
            self.REFERENCE_FRAME, "Show the surface of this date (one of the frames; empty = the mean of the dates)",
            optional=True)
        reference.setFlags(reference.flags() | parameter_flag_advanced())
        self.addParameter(reference)
        keep_noisy = QgsProcessingParameterBoolean(self.KEEP_NOISY_FRAMES, KEEP_NOISY_LABEL, defaultValue=False)
        keep_noisy.setHelp(KEEP_NOISY_TOOLTIP)
        keep_noisy.setFlags(keep_noisy.flags() | parameter_flag_advanced())
        self.addParameter(keep_noisy)
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, "Bands (all, or a list such as 4,3,2; empty = Band)", defaultValue="", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.MASK_KIND, "Mask kind", options=["Auto (detected)"] + [LABELS[k] for k in KINDS], defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.AUTO_MASK, "Screen clouds automatically when there are no masks", defaultValue=True))
        for parameter in (
                QgsProcessingParameterNumber(self.MASK_DILATION, "Mask dilation in pixels (-1 = engine default)",
                                             number_type_integer(), -1, minValue=-1, maxValue=1000),
                QgsProcessingParameterBoolean(self.MASK_SNOW, "Count snow and ice as unusable", defaultValue=False),
                QgsProcessingParameterBoolean(self.MASK_DARK_AREAS, "Count SCL dark areas as unusable",
                                              defaultValue=False)):
            parameter.setFlags(parameter.flags() | parameter_flag_advanced())
            self.addParameter(parameter)
        engine = QgsProcessingParameterFile(
            self.ENGINE, "Engine (misr executable or its environment's python; empty = auto)",
            file_behavior_file(), optional=True, fileFilter="All files (*)")
        engine.setFlags(engine.flags() | parameter_flag_advanced())
        self.addParameter(engine)
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT, "Super-resolved"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.UNCERTAINTY, "Uncertainty", optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.KERNELS, "Blur kernels estimated by test-time fine-tuning (JSON)", "JSON (*.json)",
            optional=True, createByDefault=False))

    # -- run ----------------------------------------------------------------------------------------
    def _parameters(self, parameters: Dict, context: QgsProcessingContext) -> RunParameters:
        """The run as asked for (the model not yet checked against the engine)."""
        frames = self.parameterAsLayerList(parameters, self.FRAMES, context)
        masks = self.parameterAsLayerList(parameters, self.MASKS, context) if parameters.get(self.MASKS) else []
        frame_infos = [raster_info(layer) for layer in frames if isinstance(layer, QgsRasterLayer)]
        mask_infos = [raster_info(layer) for layer in masks if isinstance(layer, QgsRasterLayer)]
        if mask_infos:
            if len(mask_infos) != len(frame_infos):
                raise QgsProcessingException(
                    f"{len(mask_infos)} masks for {len(frame_infos)} frames: give one mask per frame")
            by_name = {info.name: info for info in mask_infos}
            matched = match_masks([info.name for info in frame_infos], list(by_name))
            if all(matched) and len(set(matched)) == len(matched):
                mask_infos = [by_name[name] for name in matched]
        kind = MASK_KINDS[self.parameterAsEnum(parameters, self.MASK_KIND, context)]
        pairs = [FrameInput(frame, mask_infos[i] if mask_infos else None, kind if mask_infos else AUTO)
                 for i, frame in enumerate(frame_infos)]
        band, bands = self.parameterAsInt(parameters, self.BAND, context), ()
        text = self.parameterAsString(parameters, self.BANDS, context).strip().lower()
        if text == "all":
            bands = tuple(range(1, frame_infos[0].band_count + 1)) if frame_infos else ()
        elif text:
            try:
                bands = tuple(int(part) for part in text.split(",") if part.strip())
            except ValueError:
                raise QgsProcessingException(f"Bands {text!r}: give all or band numbers such as 4,3,2")
        if len(bands) == 1:
            band, bands = bands[0], ()
        dilation = self.parameterAsInt(parameters, self.MASK_DILATION, context)
        ttf = self.parameterAsInt(parameters, self.TTF_STEPS, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        uncertainty = self.parameterAsOutputLayer(parameters, self.UNCERTAINTY, context) \
            if parameters.get(self.UNCERTAINTY) is not None else ""
        kernels = self.parameterAsFileOutput(parameters, self.KERNELS, context) \
            if parameters.get(self.KERNELS) is not None and ttf > 0 else ""
        return RunParameters(
            frames=pairs, band=band, bands=bands,
            auto_mask=self.parameterAsBoolean(parameters, self.AUTO_MASK, context),
            mask_dilation=None if dilation < 0 else dilation,
            mask_snow=self.parameterAsBoolean(parameters, self.MASK_SNOW, context),
            mask_dark_areas=self.parameterAsBoolean(parameters, self.MASK_DARK_AREAS, context),
            model=self.parameterAsString(parameters, self.MODEL, context).strip(),
            weights=(self.parameterAsString(parameters, self.WEIGHTS, context) or "").strip(),
            ttf_enabled=ttf > 0, ttf_steps=ttf or DEFAULT_TTF_STEPS, kernels_out=kernels or "",
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            output=output, uncertainty=uncertainty or "", write_uncertainty=bool(uncertainty),
            overwrite=True, align=self.parameterAsBoolean(parameters, self.ALIGN, context),
            sensor_mtf=self._sensor_mtf(parameters, context),
            reference_frame=self._reference_frame(parameters, context),
            keep_noisy_frames=self.parameterAsBoolean(parameters, self.KEEP_NOISY_FRAMES, context),
            extent=self._extent(parameters, context, frames))

    def _extent(self, parameters: Dict, context: QgsProcessingContext,
                frames: List) -> Optional[Tuple[float, float, float, float]]:
        """EXTENT in the first frame's CRS (None when not given: the whole frames)."""
        if parameters.get(self.EXTENT) in (None, "") or not frames:
            return None
        area = self.parameterAsExtent(parameters, self.EXTENT, context, frames[0].crs())
        if area.isNull() or area.isEmpty():
            return None
        return area.xMinimum(), area.yMinimum(), area.xMaximum(), area.yMaximum()

    def _reference_frame(self, parameters: Dict, context: QgsProcessingContext) -> str:
        """REFERENCE_FRAME's file ('' when none is given)."""
        if not parameters.get(self.REFERENCE_FRAME):
            return ""
        layer = self.parameterAsRasterLayer(parameters, self.REFERENCE_FRAME, context)
        return raster_info(layer).path or "" if layer is not None else ""

    def _sensor_mtf(self, parameters: Dict, context: QgsProcessingContext) -> Tuple[float, ...]:
        """SENSOR_MTF's values (`parse_sensor_mtf`; a number, as earlier versions took, reads as one)."""
        try:
            return parse_sensor_mtf(self.parameterAsString(parameters, self.SENSOR_MTF, context) or "")
        except ValueError as exc:
            raise QgsProcessingException(str(exc)) from None

    @staticmethod
    def _with_model(params: RunParameters, caps: EngineCapabilities) -> RunParameters:
        """`params` with its model checked against the engine's (when it could be asked; else
        passed on as given, '' = the engine's default) and the run named after it."""
        name = label = params.model
        if caps.ok:
            if name.isdigit() and int(name) < len(caps.models):  # an index, as the former enum took
                name = caps.models[int(name)].name
            try:
                model = caps.model(name)
            except UnknownModel as exc:
                raise RunError(f"Model: {exc}") from exc
            name, label = model.name, model.label
            shipped = model.weights_choice(params.weights) if params.weights else None
            if shipped is not None and not os.path.isfile(params.weights):  # shipped weights by name
                params = replace(params, weights="" if shipped == model.weights_options[0] else shipped.path)
        return replace(params, model=name,
                       run_name=run_name(label, [item.frame.name for item in params.frames]))

    def processAlgorithm(self, parameters: Dict, context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict:
        params = self._parameters(parameters, context)
        try:
            named = params.weights and not os.path.isfile(params.weights)  # shipped weights' name?
            check(replace(params, weights="") if named else params)  # the inputs first: asking the engine takes seconds
            engine = settings.current_engine(self.parameterAsFile(parameters, self.ENGINE, context) or None)
            caps = settings.probe(engine)
            if engine is not None and not caps.ok:
                feedback.pushWarning(f"The engine could not be asked for its models ({caps.error}); "
                                     "it checks the run itself.")
            prepared = prepare_run(self._with_model(params, caps), engine, caps if caps.ok else None)
        except RunError as exc:
            raise QgsProcessingException(str(exc))
        for note in prepared.notes:
            feedback.pushInfo(note)
        feedback.pushCommandInfo(prepared.command_text)
        outcome = execute(prepared, FeedbackReporter(feedback), feedback.isCanceled)
        if outcome.canceled:
            raise QgsProcessingException("Canceled: the engine was stopped and its files removed")
        if not outcome.ok:
            raise QgsProcessingException(f"MISR engine: {outcome.error}")
        self._finished_run = (prepared.params, outcome.sr, outcome.uncertainty, outcome.frames_used)
        results = {self.OUTPUT: outcome.sr, self.UNCERTAINTY: outcome.uncertainty}
        if prepared.params.kernels_out:
            results[self.KERNELS] = prepared.params.kernels_out
        return results

    def postProcessAlgorithm(self, context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> Dict:
        """Main thread, real context: style the outputs Processing is about to load."""
        if self._finished_run is None:
            return {}
        params, sr, uncertainty, frames_used = self._finished_run
        reference = params.frames[0].frame.path if params.frames else None
        run = RunGroup(params.run_name, frames_used)
        for role, path in (("sr", sr), ("uncertainty", uncertainty)):
            if path and context.willLoadLayerOnCompletion(path):
                processor = StyleOutput(role, run, sr, uncertainty or "", reference, params.band)
                _POST_PROCESSORS.append(processor)  # Processing keeps only a pointer to it
                del _POST_PROCESSORS[:-20]
                context.layerToLoadOnCompletionDetails(path).setPostProcessor(processor)
        return {}
