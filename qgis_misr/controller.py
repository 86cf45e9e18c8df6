"""Starting runs and showing their outcome: the glue between the dialog, the task and the map."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from typing import Callable, Dict, List, Optional

from qgis.core import Qgis, QgsApplication, QgsProcessingUtils, QgsProject, QgsTask

from .core.command import build_command
from .core.engine import EngineCapabilities, EngineLocation, cached_capabilities
from .core.export import export_results
from .core.naming import safe_file_stem
from .core.params import RunParameters
from .core.validation import validate_parameters
from .layers import add_results
from .task import MisrTask, log

MESSAGE_TITLE = "MISR"


class RunError(Exception):
    """A run could not be started (bad parameters, no engine): one line for people."""


class RunController:
    """Owns the running tasks. `iface` may be None (tests, Processing): no message bar then."""

    def __init__(self, iface=None, project: Optional[QgsProject] = None):
        self.iface = iface
        self.project = project
        self.tasks: List[MisrTask] = []
        self.listeners: List[Callable[[MisrTask], None]] = []
        self.last_results: Dict[str, str] = {}

    # -- starting -------------------------------------------------------------------------
    def prepare(self, params: RunParameters) -> tuple:
        """Fill temporary output paths; returns (params, temporary folder or None)."""
        folder = None
        if not params.output or (params.write_uncertainty and not params.uncertainty):
            folder = tempfile.mkdtemp(prefix="misr_", dir=QgsProcessingUtils.tempFolder())
            stem = safe_file_stem(params.run_name or "misr")
            params = replace(
                params,
                output=params.output or os.path.join(folder, f"{stem}_sr.tif"),
                uncertainty=(params.uncertainty or os.path.join(folder, f"{stem}_uncertainty.tif"))
                if params.write_uncertainty else "")
        return params, folder

    def start(self, params: RunParameters, engine: Optional[EngineLocation],
              caps: Optional[EngineCapabilities] = None, reference=None) -> MisrTask:
        """Validate, build the command and start a background task. Raises RunError."""
        if engine is None:
            raise RunError("MISR engine not found: set its Python environment in the dialog")
        problems = validate_parameters(params)
        if problems:
            raise RunError(problems[0])
        params, folder = self.prepare(params)
        caps = caps or cached_capabilities(engine)
        try:
            argv = build_command(engine.argv, params, caps)
        except ValueError as exc:
            raise RunError(str(exc)) from exc
        outputs = [params.output] + ([params.uncertainty] if params.write_uncertainty else [])
        task = MisrTask(f"MISR super-resolution: {params.run_name}", argv, outputs,
                        self._finished, temporary_folder=folder,
                        context={"params": params, "reference": reference,
                                 "temporary": folder is not None})
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
        params: RunParameters = task.context["params"]
        result = task.result
        if result is not None and result.ok:
            self._add_layers(task, params)
        elif result is not None and result.canceled:
            self.message(f"{params.run_name}: canceled; no files were left behind.",
                         Qgis.MessageLevel.Info)
            log(f"{params.run_name}: canceled" + (f"; removed {', '.join(result.removed)}"
                                                  if result.removed else ""))
        else:
            error = task.error or "unknown error"
            log(f"{params.run_name} failed: {error}", Qgis.MessageLevel.Critical)
            for line in (result.stderr_tail[-20:] if result is not None else []):
                log("  " + line, Qgis.MessageLevel.Critical)
            self.message(f"Super-resolution failed: {error}", Qgis.MessageLevel.Critical)
        for listener in list(self.listeners):
            listener(task)

    def _add_layers(self, task: MisrTask, params: RunParameters) -> None:
        result = task.result
        done = result.done or {}
        sr = done.get("output") or params.output
        uncertainty = done.get("uncertainty") or (params.uncertainty if params.write_uncertainty else None)
        project = self.project or QgsProject.instance()
        try:
            group, sr_layer, unc_layer = add_results(project, params.run_name, sr, uncertainty,
                                                     task.context.get("reference"), params.band)
        except RuntimeError as exc:
            log(str(exc), Qgis.MessageLevel.Critical)
            self.message(f"Super-resolution finished but its result cannot be shown: {exc}",
                         Qgis.MessageLevel.Critical)
            return
        task.context["layers"] = (group, sr_layer, unc_layer)
        self.last_results = {"sr": sr, "uncertainty": uncertainty or "", "run": params.run_name}
        device = done.get("device") or (result.start or {}).get("device", "?")
        text = f"{params.run_name}: done on {device} in {done.get('seconds', '?')} s."
        level = Qgis.MessageLevel.Success
        if params.device.startswith("cuda") and not str(device).startswith("cuda"):
            text += f" The GPU was requested but the engine ran on {device}."
            level = Qgis.MessageLevel.Warning
        if result.warnings:
            text += f" {len(result.warnings)} warning(s), see the MISR log."
            level = Qgis.MessageLevel.Warning
        if task.context.get("temporary"):
            text += " The results are temporary files: use Export to keep them."
        self.message(text, level)

    def message(self, text: str, level=Qgis.MessageLevel.Info) -> None:
        if self.iface is not None and self.iface.messageBar() is not None:
            duration = 0 if level in (Qgis.MessageLevel.Critical, Qgis.MessageLevel.Warning) else 10
            self.iface.messageBar().pushMessage(MESSAGE_TITLE, text, level=level, duration=duration)

    # -- export -------------------------------------------------------------------------------
    def export(self, sr: str, uncertainty: Optional[str], folder: str, run: str) -> Dict[str, str]:
        """Write a run's results as Cloud-Optimized GeoTIFFs into `folder`."""
        written = export_results(sr, uncertainty or None, folder, safe_file_stem(run))
        text = "Exported as Cloud-Optimized GeoTIFF: " + ", ".join(written.values())
        log(text, Qgis.MessageLevel.Success)
        self.message(text, Qgis.MessageLevel.Success)
        return written
