"""The background task that runs the engine (QgsTask): progress into QGIS's task bar.

``run()`` runs in a worker thread and never touches the GUI; ``finished()`` runs on the main
thread and hands the outcome to a callback (which adds layers, shows messages). The run itself
is core.run's, shared with the Processing algorithm.
"""

from __future__ import annotations

from typing import Callable, List, Optional

from qgis.core import Qgis, QgsMessageLog, QgsTask

from .core.run import PreparedRun, RunOutcome, RunReporter, execute
from .core.runner import EngineResult
from .core.timing import RunClock

LOG_TAG = "MISR"


def log(message: str, level: Qgis.MessageLevel = Qgis.MessageLevel.Info) -> None:
    """Write to the QGIS log panel, tab "MISR" (thread-safe)."""
    QgsMessageLog.logMessage(message, LOG_TAG, level)


class _TaskReporter(RunReporter):
    """Engine events into the task's progress and the MISR log."""

    def __init__(self, task: "MisrTask"):
        self.task = task

    def start(self, summary: str) -> None:
        log(summary)

    def progress(self, fraction: float, message: str) -> None:
        self.task.message = message
        self.task.setProgress(100.0 * fraction)

    def warning(self, message: str) -> None:
        log(f"Warning: {message}", Qgis.MessageLevel.Warning)

    def log(self, message: str) -> None:
        log(message)

    def done(self, summary: str) -> None:
        log(summary, Qgis.MessageLevel.Success)

    def error(self, message: str) -> None:
        if self.task.isCanceled():  # the engine's word on being stopped: not an error
            log(f"Engine stopped: {message}")
        else:
            log(f"Error: {message}", Qgis.MessageLevel.Critical)


class MisrTask(QgsTask):
    """Runs one prepared engine run. After it ends, ``outcome`` says how it went."""

    def __init__(self, prepared: PreparedRun, on_finished: Optional[Callable[["MisrTask"], None]] = None,
                 context: Optional[dict] = None):
        super().__init__(f"MISR super-resolution: {prepared.params.run_name}", QgsTask.Flag.CanCancel)
        self.prepared = prepared
        self.on_finished = on_finished
        self.context = context if context is not None else {}
        """Whatever the caller needs back in on_finished (the reference layer)."""
        self.outcome: Optional[RunOutcome] = None
        self.exception: Optional[BaseException] = None
        self.message = ""
        self.clock: Optional[RunClock] = None
        """The run's time, from its start (the dialog reads its status line every second)."""

    @property
    def argv(self) -> List[str]:
        return self.prepared.argv

    @property
    def result(self) -> Optional[EngineResult]:
        """The engine's result (None until the run has ended, or when it raised)."""
        return self.outcome.result if self.outcome is not None else None

    def run(self) -> bool:
        """Worker thread. A run people canceled ends as a completed task whose description
        says "canceled" (a terminated task is announced by QGIS as "Task failed")."""
        log("Running: " + self.prepared.command_text)
        try:
            self.clock = RunClock()
            self.outcome = execute(self.prepared, _TaskReporter(self), self.isCanceled, self.clock)
        except Exception as exc:  # never let an exception escape into the task manager
            self.exception = exc
            self.prepared.plan.discard()
            return False
        if self.outcome.canceled:
            self.setDescription(f"{self.description()} (canceled)")
            return True
        return self.outcome.ok

    def cancel(self) -> None:
        log("Cancel requested: stopping the engine")
        super().cancel()

    @property
    def error(self) -> Optional[str]:
        if self.exception is not None:
            return f"{type(self.exception).__name__}: {self.exception}"
        if self.outcome is None:
            return "the engine did not run"
        return self.outcome.error

    def finished(self, result: bool) -> None:  # main thread
        if self.on_finished is not None:
            self.on_finished(self)
