"""Starting runs and showing their outcome: the glue between the dialog, the task and the map."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, Optional

from qgis.core import Qgis, QgsApplication, QgsProcessingUtils, QgsProject, QgsRasterLayer, QgsTask

from .core.engine import EngineCapabilities, EngineLocation, cached_capabilities
from .core.export import export_results
from . import settings
from .core.naming import safe_file_stem
from .core.params import RunParameters
from .core.run import prepare_run
from .layers import add_results, result_group_name
from .task import MisrTask, log

if TYPE_CHECKING:
    from qgis.gui import QgisInterface

MESSAGE_TITLE = "MISR"


class RunController:
    """Owns the running tasks. `iface` may be None (tests): no message bar then."""

    def __init__(self, iface: Optional[QgisInterface] = None, project: Optional[QgsProject] = None):
        self.iface = iface
        self.project = project
        self.tasks: List[MisrTask] = []
        self.listeners: List[Callable[[MisrTask], None]] = []
        self.last_results: Dict[str, str] = {}

    # -- starting -------------------------------------------------------------------------
    def start(self, params: RunParameters, engine: Optional[EngineLocation],
              caps: Optional[EngineCapabilities] = None, reference: Optional[QgsRasterLayer] = None) -> MisrTask:
        """Prepare the run (core.run) and start it in a background task. Raises core.run.RunError."""
        prepared = prepare_run(params, engine, caps or cached_capabilities(engine),
                               QgsProcessingUtils.tempFolder())
        task = MisrTask(prepared, self._finished, context={"reference": reference})
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)
        return task

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            if task.status() not in (QgsTask.TaskStatus.Complete, QgsTask.TaskStatus.Terminated):
                task.cancel()

    # -- outcome (main thread) ------------------------------------------------------------------
    def _finished(self, task: MisrTask) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        run = task.prepared.params.run_name
        outcome = task.outcome
        if outcome is not None and outcome.ok:
            self._add_layers(task)
        elif outcome is not None and outcome.canceled:
            self.message(f"{run}: canceled; no files were left behind.", Qgis.MessageLevel.Info)
            removed = outcome.result.removed
            log(f"{run}: canceled" + (f"; removed {', '.join(removed)}" if removed else ""))
        else:
            error = task.error or "unknown error"
            log(f"{run} failed: {error}", Qgis.MessageLevel.Critical)
            for line in (outcome.result.stderr_tail[-20:] if outcome is not None else []):
                log("  " + line, Qgis.MessageLevel.Critical)
            self.message(f"Super-resolution failed: {error}", Qgis.MessageLevel.Critical)
        for listener in list(self.listeners):
            listener(task)

    def _add_layers(self, task: MisrTask) -> None:
        outcome, params = task.outcome, task.prepared.params
        project = self.project or QgsProject.instance()
        run = result_group_name(project, params.run_name, outcome.frames_used)
        try:
            group, sr_layer, unc_layer = add_results(project, run, outcome.sr,
                                                     outcome.uncertainty, task.context.get("reference"),
                                                     params.band)
        except RuntimeError as exc:
            log(str(exc), Qgis.MessageLevel.Critical)
            self.message(f"Super-resolution finished but its result cannot be shown: {exc}",
                         Qgis.MessageLevel.Critical)
            return
        task.context["layers"] = (group, sr_layer, unc_layer)
        self.last_results = {"sr": outcome.sr, "uncertainty": outcome.uncertainty or "", "run": run}
        seconds = "?" if outcome.seconds is None else outcome.seconds
        text = f"{run}: done on {outcome.device} in {seconds} s."
        level = Qgis.MessageLevel.Success
        if outcome.gpu_fallback:
            text += f" The GPU was requested but the engine ran on {outcome.device}."
            level = Qgis.MessageLevel.Warning
        if outcome.warnings:
            text += f" {len(outcome.warnings)} warning(s), see the MISR log."
            level = Qgis.MessageLevel.Warning
        text = f"{text} {task.prepared.plan.saved_text()}".strip()
        self.message(text, level)

    def message(self, text: str, level: Qgis.MessageLevel = Qgis.MessageLevel.Info) -> None:
        if self.iface is not None and self.iface.messageBar() is not None:
            duration = 0 if level in (Qgis.MessageLevel.Critical, Qgis.MessageLevel.Warning) else 10
            self.iface.messageBar().pushMessage(MESSAGE_TITLE, text, level=level, duration=duration)

    # -- export -------------------------------------------------------------------------------
    def export(self, sr: str, uncertainty: Optional[str], folder: str, run: str) -> Dict[str, str]:
        """Write a run's results as Cloud-Optimized GeoTIFFs into `folder`."""
        written = export_results(sr, uncertainty or None, folder, safe_file_stem(run))
        settings.remember_export_folder(folder)
        text = "Exported as Cloud-Optimized GeoTIFF: " + ", ".join(written.values())
        log(text, Qgis.MessageLevel.Success)
        self.message(text, Qgis.MessageLevel.Success)
        return written

