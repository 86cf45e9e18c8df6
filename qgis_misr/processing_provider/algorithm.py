"""Processing algorithm misr:superresolve: the same engine run as the dialog, for the Toolbox,
the modeler, batch mode and qgis_process."""

from __future__ import annotations

import os
from typing import Dict, List, Optional

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingUtils,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QIcon

from .. import settings
from ..compat import file_behavior_file, number_type_integer, parameter_flag_advanced, source_type_raster
from ..core.command import UnsupportedOption, build_command
from ..core.engine import capabilities
from ..core.naming import match_masks, run_name
from ..core.params import ALIGN_LABEL, DEFAULT_TTF_STEPS, MODELS, FrameInput, RunParameters
from ..core.runner import run_engine
from ..core.validation import alignment_notes, validate_parameters
from ..layers import raster_info, style_sr_layer, style_uncertainty_layer, tag_layer
from ..resources import icon_path

DEVICES = ("auto", "cpu", "cuda")
_POST_PROCESSORS: List["StyleOutput"] = []


class StyleOutput(QgsProcessingLayerPostProcessorInterface):
    """Styles an output layer once Processing has loaded it (main thread)."""

    def __init__(self, role: str, run: str, sr: str, uncertainty: str,
                 reference_source: Optional[str] = None, band: int = 1):
        super().__init__()
        self.role, self.run, self.sr, self.uncertainty = role, run, sr, uncertainty
        self.reference_source, self.band = reference_source, band

    def postProcessLayer(self, layer, context, feedback) -> None:
        if not isinstance(layer, QgsRasterLayer):
            return
        if self.role == "sr":
            reference = None
            for candidate in context.project().mapLayers().values() if context.project() else []:
                if isinstance(candidate, QgsRasterLayer) and candidate.source() == self.reference_source:
                    reference = candidate
                    break
            style_sr_layer(layer, reference, self.band)
        else:
            style_uncertainty_layer(layer)
        tag_layer(layer, self.role, self.run, self.sr, self.uncertainty)


class SuperResolveAlgorithm(QgsProcessingAlgorithm):
    FRAMES = "FRAMES"
    MASKS = "MASKS"
    BAND = "BAND"
    MODEL = "MODEL"
    TTF_STEPS = "TTF_STEPS"
    DEVICE = "DEVICE"
    TILE_SIZE = "TILE_SIZE"
    ALIGN = "ALIGN"
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
        return ["super-resolution", "misr", "piunet", "deepsum", "time series", "satellite", "x3"]

    def icon(self) -> QIcon:
        return QIcon(icon_path("misr.svg"))

    def shortHelpString(self) -> str:
        return (
            "Fuses co-registered frames of one scene (single-band rasters on one grid) into one "
            "image with 3x finer pixels, and a per-pixel uncertainty (expected absolute error, "
            "in the input's units).<br><br>"
            "<b>Masks</b>: optional, one per frame (nonzero = clear), in the same order as the "
            "frames; if the order differs they are paired by name (frame_03 with mask_03). "
            "Without masks each frame's nodata marks invalid pixels.<br>"
            "<b>Test-time fine-tuning steps</b>: 0 = off; only when the engine offers it.<br>"
            "<b>Tile size</b>: 0 = the engine's default; smaller needs less memory.<br>"
            f"<b>{ALIGN_LABEL}</b> (ALIGN): frames and masks whose CRS, pixel size, extent or "
            "size differ from the first frame's are resampled onto its grid in memory (frames "
            "bilinear, masks nearest neighbour) instead of being refused.<br><br>"
            "The work is done by the separate <code>misr</code> engine (found from the plugin "
            "settings, the MISR_ENGINE environment variable, the repository's .venv or the PATH, "
            "or the Engine parameter).")

    def createInstance(self) -> "SuperResolveAlgorithm":
        return SuperResolveAlgorithm()

    def initAlgorithm(self, config: Optional[Dict] = None) -> None:
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.FRAMES, "Frames (time series of one scene)", source_type_raster()))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.MASKS, "Masks (one per frame, nonzero = clear)", source_type_raster(), optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.BAND, "Band", number_type_integer(), 1, minValue=1))
        self.addParameter(QgsProcessingParameterEnum(
            self.MODEL, "Model", options=[label for _name, label in MODELS], defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.TTF_STEPS, "Test-time fine-tuning steps (0 = off)", number_type_integer(), 0,
            minValue=0, maxValue=100000))
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, "Device", options=["Auto", "CPU", "GPU (CUDA)"], defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE_SIZE, "Tile size in LR pixels (0 = engine default)", number_type_integer(), 0,
            minValue=0, maxValue=100000))
        self.addParameter(QgsProcessingParameterBoolean(self.ALIGN, ALIGN_LABEL, defaultValue=False))
        engine = QgsProcessingParameterFile(
            self.ENGINE, "Engine (misr executable or its environment's python; empty = auto)",
            file_behavior_file(), optional=True, fileFilter="All files (*)")
        engine.setFlags(engine.flags() | parameter_flag_advanced())
        self.addParameter(engine)
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT, "Super-resolved"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.UNCERTAINTY, "Uncertainty", optional=True, createByDefault=True))

    # -- run ----------------------------------------------------------------------------------------
    def _parameters(self, parameters: Dict, context: QgsProcessingContext) -> RunParameters:
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
        pairs = [FrameInput(frame, mask_infos[i] if mask_infos else None)
                 for i, frame in enumerate(frame_infos)]
        model = MODELS[self.parameterAsEnum(parameters, self.MODEL, context)][0]
        ttf = self.parameterAsInt(parameters, self.TTF_STEPS, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        uncertainty = self.parameterAsOutputLayer(parameters, self.UNCERTAINTY, context) \
            if parameters.get(self.UNCERTAINTY) is not None else ""
        return RunParameters(
            frames=pairs, band=self.parameterAsInt(parameters, self.BAND, context), model=model,
            ttf_enabled=ttf > 0, ttf_steps=ttf or DEFAULT_TTF_STEPS,
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            output=output, uncertainty=uncertainty or "", write_uncertainty=bool(uncertainty),
            overwrite=True, run_name=run_name(model, [f.frame.name for f in pairs]),
            align=self.parameterAsBoolean(parameters, self.ALIGN, context))

    def processAlgorithm(self, parameters: Dict, context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict:
        params = self._parameters(parameters, context)
        problems = validate_parameters(params)
        if problems:
            raise QgsProcessingException(" ".join(problems))
        for note in alignment_notes(params):
            feedback.pushInfo(note)
        configured = self.parameterAsFile(parameters, self.ENGINE, context)
        engine = settings.current_engine(configured or None)
        if engine is None:
            raise QgsProcessingException(
                "MISR engine not found: set the Engine parameter, the plugin's engine setting or "
                "the MISR_ENGINE environment variable")
        caps = capabilities(engine) if params.ttf_enabled else None
        try:
            argv = build_command(engine.argv, params, caps)
        except UnsupportedOption as exc:
            raise QgsProcessingException(str(exc))
        feedback.pushCommandInfo(" ".join(argv))

        def on_event(event: dict) -> None:
            kind = event.get("event")
            if kind == "progress":
                try:
                    feedback.setProgress(100.0 * float(event.get("fraction", 0.0)))
                except (TypeError, ValueError):
                    return
                if event.get("message"):
                    feedback.setProgressText(str(event["message"]))
            elif kind == "start":
                feedback.pushInfo(f"Engine started: {event.get('frames')} frames, model "
                                  f"{event.get('model')}, device {event.get('device')}")
            elif kind == "warning":
                feedback.pushWarning(str(event.get("message", "")))
            elif kind == "done":
                feedback.pushInfo(f"Done in {event.get('seconds')} s on {event.get('device')}")
            elif kind in ("stderr", "log"):
                feedback.pushConsoleInfo(str(event.get("message", "")))

        outputs = [params.output] + ([params.uncertainty] if params.write_uncertainty else [])
        result = run_engine(argv, outputs, on_event, feedback.isCanceled)
        if result.canceled:
            raise QgsProcessingException("Canceled: the engine was stopped and its files removed")
        if not result.ok:
            raise QgsProcessingException(f"MISR engine: {result.error}")
        done = result.done or {}
        sr = done.get("output") or params.output
        uncertainty = done.get("uncertainty") or (params.uncertainty if params.write_uncertainty else None)
        self._finished_run = (params, sr, uncertainty)
        return {self.OUTPUT: sr, self.UNCERTAINTY: uncertainty}

    def postProcessAlgorithm(self, context: QgsProcessingContext, feedback: QgsProcessingFeedback) -> Dict:
        """Main thread, real context: style the outputs Processing is about to load."""
        if self._finished_run is None:
            return {}
        params, sr, uncertainty = self._finished_run
        reference = params.frames[0].frame.path if params.frames else None
        for role, path in (("sr", sr), ("uncertainty", uncertainty)):
            if path and context.willLoadLayerOnCompletion(path):
                processor = StyleOutput(role, params.run_name, sr, uncertainty or "", reference,
                                        params.band)
                _POST_PROCESSORS.append(processor)  # Processing keeps only a pointer to it
                del _POST_PROCESSORS[:-20]
                context.layerToLoadOnCompletionDetails(path).setPostProcessor(processor)
        return {}
