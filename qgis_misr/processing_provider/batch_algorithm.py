"""Processing algorithm misr:batch: every scene of a manifest with `misr batch` (a local Dask
cluster or an existing one), from the Toolbox, the modeler or qgis_process."""

from __future__ import annotations

from typing import Dict, List, Optional

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtGui import QIcon

from .. import settings
from ..compat import file_behavior_file, number_type_integer, parameter_flag_advanced
from ..core import contract
from ..core.run import ENGINE_NOT_FOUND
from ..core.runner import run_engine
from ..core.timing import RunClock
from ..resources import icon_path

DEVICES = ("auto", "cpu", "cuda")


def batch_command(argv: List[str], manifest: str, output_folder: str = "", device: str = "auto",
                  overwrite: bool = False, skip_invalid: bool = False, scheduler: str = "",
                  workers: int = 0) -> List[str]:
    """The `misr batch` command line (JSON progress) for these choices."""
    command = list(argv) + ["batch", manifest, "--progress", "json", "--device", device]
    if output_folder:
        command += ["-o", output_folder]
    if overwrite:
        command.append("--overwrite")
    if skip_invalid:
        command.append("--skip-invalid")
    if scheduler:
        command += ["--scheduler", scheduler]
    elif workers:
        command += ["--workers", str(workers)]
    return command


class RunManifestAlgorithm(QgsProcessingAlgorithm):
    MANIFEST = "MANIFEST"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    DEVICE = "DEVICE"
    OVERWRITE = "OVERWRITE"
    SKIP_INVALID = "SKIP_INVALID"
    SCHEDULER = "SCHEDULER"
    WORKERS = "WORKERS"
    ENGINE = "ENGINE"
    REPORT = "REPORT"

    def name(self) -> str:
        return "batch"

    def displayName(self) -> str:
        return "Super-resolve an archive (manifest of scenes)"

    def tags(self) -> List[str]:
        return ["super-resolution", "misr", "batch", "manifest", "dask", "archive"]

    def icon(self) -> QIcon:
        return QIcon(icon_path("misr.svg"))

    def shortHelpString(self) -> str:
        return ("Super-resolves every scene of a manifest (CSV or JSON Lines, one row per scene: id, "
                "frames, masks, output, uncertainty, any other option by name; globs allowed) with "
                "<code>misr batch</code>, on a local Dask cluster sized to the machine or an existing one "
                "(Scheduler: its address or scheduler file). Every row is checked before anything runs. "
                "Scenes already done by the same run are skipped, so running it again after a cancel "
                "does only the rest; one scene's failure does not stop the others. A report "
                "(<i>manifest</i>_report.csv) is written beside the outputs.")

    def createInstance(self) -> "RunManifestAlgorithm":
        return RunManifestAlgorithm()

    def initAlgorithm(self, config: Optional[Dict] = None) -> None:
        self.addParameter(QgsProcessingParameterFile(
            self.MANIFEST, "Manifest (CSV or JSON Lines)", file_behavior_file(),
            fileFilter="Manifests (*.csv *.jsonl *.ndjson);;All files (*)"))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT_FOLDER, "Output folder (empty = the manifest's folder)", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, "Device", options=["Auto", "CPU", "GPU (CUDA)"], defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.OVERWRITE, "Redo every scene (replace existing outputs)", defaultValue=False))
        self.addParameter(QgsProcessingParameterBoolean(
            self.SKIP_INVALID, "Skip invalid rows (run the others)", defaultValue=False))
        advanced = [
            QgsProcessingParameterString(self.SCHEDULER, "Dask scheduler (address or scheduler file; "
                                                         "empty = a local cluster)", optional=True),
            QgsProcessingParameterNumber(self.WORKERS, "Local workers (0 = sized to the machine)",
                                         number_type_integer(), 0, minValue=0, maxValue=1024),
            QgsProcessingParameterFile(self.ENGINE, "Engine (misr executable or its environment's "
                                                    "python; empty = auto)", file_behavior_file(),
                                       optional=True, fileFilter="All files (*)")]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | parameter_flag_advanced())
            self.addParameter(parameter)
        self.addOutput(QgsProcessingOutputFile(self.REPORT, "Report (CSV)"))

    def processAlgorithm(self, parameters: Dict, context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> Dict:
        engine = settings.current_engine(self.parameterAsFile(parameters, self.ENGINE, context) or None)
        if engine is None:
            raise QgsProcessingException(ENGINE_NOT_FOUND)
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context) \
            if parameters.get(self.OUTPUT_FOLDER) else ""
        argv = batch_command(
            list(engine.argv), self.parameterAsFile(parameters, self.MANIFEST, context), folder,
            DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            self.parameterAsBoolean(parameters, self.OVERWRITE, context),
            self.parameterAsBoolean(parameters, self.SKIP_INVALID, context),
            self.parameterAsString(parameters, self.SCHEDULER, context).strip(),
            self.parameterAsInt(parameters, self.WORKERS, context))
        feedback.pushCommandInfo(" ".join(argv))
        clock = RunClock()
        result = run_engine(argv, (), lambda event: _report(event, feedback, clock), feedback.isCanceled,
                            on_wait=lambda: feedback.setProgressText(clock.text()))
        if result.canceled:
            raise QgsProcessingException("Canceled: the scenes finished so far are kept; run it again "
                                         "to do the rest")
        if not result.ok:
            raise QgsProcessingException(f"MISR engine: {result.error}")
        return {self.REPORT: (result.done or {}).get("report", "")}


def _report(event: Dict, feedback: QgsProcessingFeedback, clock: RunClock) -> None:
    """One `misr batch` event into the Processing feedback (the progress text with the time
    elapsed and about how long is left)."""
    kind, message = event.get("event"), str(event.get("message", ""))
    if kind == contract.PROGRESS:
        fraction = float(event.get("fraction", 0.0))
        feedback.setProgress(100.0 * fraction)
        feedback.setProgressText(clock.describe(fraction, message))
        feedback.pushInfo(message)
    elif kind == contract.START:
        feedback.pushInfo(f"{event.get('to_run')} of {event.get('scenes')} scenes to run on "
                          f"{event.get('workers')} Dask worker(s); {event.get('skipped')} already done")
    elif kind == contract.WARNING:
        feedback.pushWarning(message)
    elif kind == contract.ERROR:
        feedback.reportError(message)
    elif kind in (contract.LOG, contract.STDERR):
        feedback.pushConsoleInfo(message)
    elif kind == contract.DONE:
        feedback.pushInfo(str(event.get("summary", "")))
