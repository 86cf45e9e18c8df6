"""The background task that runs the engine (QgsTask): progress into QGIS's task bar.

``run()`` runs in a worker thread and never touches the GUI; ``finished()`` runs on the main
thread and hands the outcome to a callback (which adds layers, shows messages).
"""

from __future__ import annotations

import os
import shutil
from typing import Callable, List, Optional, Sequence

from qgis.core import Qgis, QgsMessageLog, QgsTask

from .core.runner import EngineResult, run_engine

LOG_TAG = "MISR"


def log(message: str, level=Qgis.MessageLevel.Info) -> None:
    """Write to the QGIS log panel, tab "MISR" (thread-safe)."""
    QgsMessageLog.logMessage(message, LOG_TAG, level)


class MisrTask(QgsTask):
    """Runs one ``misr super-resolve`` command. After it ends, ``result`` says how it went."""

    def __init__(self, description: str, argv: Sequence[str], outputs: Sequence[str],
                 on_finished: Optional[Callable[["MisrTask"], None]] = None,
                 temporary_folder: Optional[str] = None, context: Optional[object] = None):
        super().__init__(description, QgsTask.Flag.CanCancel)
        self.argv: List[str] = list(argv)
        self.outputs = [o for o in outputs if o]
        self.on_finished = on_finished
        self.temporary_folder = temporary_folder
        self.context = context
        """Whatever the caller needs back in on_finished (the run's parameters)."""
        self.result: Optional[EngineResult] = None
        self.exception: Optional[BaseException] = None
        self.message = ""

    def run(self) -> bool:
        log("Running: " + " ".join(_quote(a) for a in self.argv))
        try:
            self.result = run_engine(self.argv, self.outputs, self._on_event, self.isCanceled)
        except Exception as exc:  # never let an exception escape into the task manager
            self.exception = exc
            return False
        if not self.result.ok and self.temporary_folder:
            shutil.rmtree(self.temporary_folder, ignore_errors=True)
        return self.result.ok

    def _on_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "progress":
            try:
                fraction = min(1.0, max(0.0, float(event.get("fraction", 0.0))))
            except (TypeError, ValueError):
                return
            self.message = str(event.get("message", ""))
            self.setProgress(100.0 * fraction)
        elif kind == "start":
            log(f"Engine started: {event.get('frames')} frames, model {event.get('model')}, "
                f"device {event.get('device')}")
        elif kind == "warning":
            log(f"Warning: {event.get('message')}", Qgis.MessageLevel.Warning)
        elif kind == "error":
            log(f"Error: {event.get('message')}", Qgis.MessageLevel.Critical)
        elif kind == "done":
            log(f"Done in {event.get('seconds')} s on {event.get('device')}: {event.get('output')}",
                Qgis.MessageLevel.Success)
        elif kind in ("stderr", "log"):
            log(str(event.get("message", "")))

    def cancel(self) -> None:
        log("Cancel requested: stopping the engine")
        super().cancel()

    @property
    def error(self) -> Optional[str]:
        if self.exception is not None:
            return f"{type(self.exception).__name__}: {self.exception}"
        if self.result is None:
            return "the engine did not run"
        return self.result.error

    def finished(self, result: bool) -> None:  # main thread
        if self.on_finished is not None:
            self.on_finished(self)


def _quote(arg: str) -> str:
    return f'"{arg}"' if (" " in arg or not arg) else arg


def remove_folder_if_empty(folder: Optional[str]) -> None:
    if folder and os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)
