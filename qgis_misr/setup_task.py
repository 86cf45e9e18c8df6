"""The engine set-up (core.engine_setup) as a background QgsTask: QGIS stays usable while pip
downloads PyTorch; every output line reaches the GUI through a signal, the steps reach the
MISR log, and ``finished()`` (main thread) hands the result to a callback."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional

from qgis.core import Qgis, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .core.engine_setup import SetupOptions, SetupResult, find_python, run_setup
from .task import log


class EngineSetupTask(QgsTask):
    """Sets up the engine described by `options`; ``result`` says how it went."""

    line = pyqtSignal(str)
    """Each line of the set-up's output (emitted from the worker thread)."""

    def __init__(self, options: SetupOptions,
                 on_finished: Optional[Callable[["EngineSetupTask"], None]] = None):
        super().__init__("MISR engine set-up", QgsTask.Flag.CanCancel)
        self.options = options
        self.on_finished = on_finished
        self.result: Optional[SetupResult] = None
        self.step = ""

    def run(self) -> bool:
        """Worker thread: never touches the GUI. A set-up people canceled is not a failure."""
        try:
            if not self.options.python:  # the Python QGIS runs on (asking it takes a subprocess)
                self.options = replace(self.options, python=find_python() or "")
            self.result = run_setup(self.options, self._line, self._progress, self.isCanceled)
        except Exception as exc:  # never let an exception escape into the task manager
            self.result = SetupResult(False, reason=f"{type(exc).__name__}: {exc}")
        if self.result.canceled:
            self.setDescription(f"{self.description()} (canceled)")
        return self.result.ok or self.result.canceled

    def _line(self, text: str) -> None:
        if text.startswith("== "):
            log(f"Engine set-up: {text[3:]}")
        self.line.emit(text)

    def _progress(self, fraction: float, title: str) -> None:
        self.step = title
        self.setProgress(100.0 * fraction)

    def finished(self, result: bool) -> None:  # main thread
        outcome = self.result
        if outcome is not None and not outcome.ok and not outcome.canceled:
            log(f"Engine set-up failed: {outcome.reason} (log: {outcome.log_path or 'none'})",
                Qgis.MessageLevel.Warning)
        if self.on_finished is not None:
            self.on_finished(self)
