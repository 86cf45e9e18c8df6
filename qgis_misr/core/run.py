"""One engine run, from parameters to results, for the dialog's task and the Processing algorithm
alike: check the parameters, plan the outputs, build the command (:func:`prepare_run`), run the
engine and hand its events to a :class:`RunReporter`, then read what it produced
(:func:`execute`). No Qt, no QGIS: the callers only say where progress and messages go.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import contract
from .command import build_command
from .engine import ENGINE_NOT_FOUND, EngineCapabilities, EngineLocation
from .naming import safe_file_stem
from .params import RunParameters
from .runner import EngineResult, run_engine
from .timing import RunClock
from .validation import run_notes, validate_parameters


class RunError(Exception):
    """A run that cannot start (no engine, bad parameters, an option the engine lacks)."""


@dataclass(frozen=True)
class OutputPlan:
    """Where a run writes: the SR and uncertainty paths ('' = not written) and, when the caller
    left output paths empty, the temporary folder made for them (removed if the run fails)."""

    sr: str
    uncertainty: str
    temporary_folder: Optional[str] = None

    @property
    def paths(self) -> List[str]:
        return [path for path in (self.sr, self.uncertainty) if path]

    @property
    def temporary(self) -> bool:
        return self.temporary_folder is not None

    def is_temporary(self, path: str) -> bool:
        """Whether `path` is one of the files planned in the temporary folder."""
        return bool(self.temporary_folder and path
                    and os.path.dirname(os.path.abspath(path)) == os.path.abspath(self.temporary_folder))

    def saved_text(self) -> str:
        """Where the results are, in one sentence that is true of this plan: saved files are
        named, temporary ones said to be temporary."""
        parts = [("SR", self.sr), ("uncertainty", self.uncertainty)]
        saved = [f"the {label} to {path}" for label, path in parts
                 if path and not self.is_temporary(path)]
        temporary = [label for label, path in parts if path and self.is_temporary(path)]
        text = f"Saved {' and '.join(saved)}." if saved else ""
        if len(temporary) == 2:
            text += " The results are temporary files: use Export to keep them."
        elif temporary:
            text += f" The {temporary[0]} is a temporary file: use Export to keep it."
        return text.strip()

    def discard(self) -> None:
        """Remove the temporary folder, if any, with whatever is in it."""
        if self.temporary_folder:
            shutil.rmtree(self.temporary_folder, ignore_errors=True)


@dataclass(frozen=True)
class PreparedRun:
    """A run ready to start: its parameters (output paths filled in), command and outputs, and
    the notes for people (frames the engine will resample, coarse masks, cloud screening)."""

    params: RunParameters
    argv: List[str]
    plan: OutputPlan
    notes: Tuple[str, ...] = ()

    @property
    def command_text(self) -> str:
        """The command as one line, for logs."""
        return " ".join(f'"{arg}"' if (" " in arg or not arg) else arg for arg in self.argv)


def plan_outputs(params: RunParameters, temp_root: Optional[str] = None
                 ) -> Tuple[RunParameters, OutputPlan]:
    """`params` with empty output paths replaced by files in a new folder under `temp_root`
    (the system's temporary folder when None), and the resulting plan."""
    folder = None
    if not params.output or (params.write_uncertainty and not params.uncertainty):
        folder = tempfile.mkdtemp(prefix="misr_", dir=temp_root)
        stem = safe_file_stem(params.run_name or "misr")
        params = replace(
            params, output=params.output or os.path.join(folder, f"{stem}_sr.tif"),
            uncertainty=(params.uncertainty or os.path.join(folder, f"{stem}_uncertainty.tif"))
            if params.write_uncertainty else "")
    uncertainty = params.uncertainty if params.write_uncertainty else ""
    return params, OutputPlan(params.output, uncertainty, folder)


def check(params: RunParameters, caps: Optional[EngineCapabilities] = None) -> None:
    """Raise RunError with every problem of `params` in one line (see validate_parameters)."""
    problems = validate_parameters(params, caps)
    if problems:
        raise RunError(" ".join(problems))


def prepare_run(params: RunParameters, engine: Optional[EngineLocation],
                caps: Optional[EngineCapabilities] = None, temp_root: Optional[str] = None
                ) -> PreparedRun:
    """Check `params` (against `caps`, the engine's probe, when given), plan the outputs and
    build the command. Raises RunError with every problem in one line."""
    if engine is None:
        raise RunError(ENGINE_NOT_FOUND)
    check(params, caps)
    params, plan = plan_outputs(params, temp_root)
    try:
        argv = build_command(engine.argv, params, caps)
    except ValueError as exc:
        plan.discard()
        raise RunError(str(exc)) from exc
    return PreparedRun(params, argv, plan, tuple(run_notes(params, caps)))


class RunReporter:
    """Receives a run's engine events, one method per event of the contract (``stderr`` lines
    go to :meth:`log`). The defaults do nothing. Called on the thread that runs the engine."""

    def start(self, summary: str) -> None:
        """The engine has read its inputs: `summary` says frames, model and device."""

    def progress(self, fraction: float, message: str) -> None:
        """`fraction` in [0, 1] of the work is done."""

    def warning(self, message: str) -> None:
        """Something people should know (a frame dropped, a fallback)."""

    def log(self, message: str) -> None:
        """A line for the log: a ``log`` event, a stderr line or a non-JSON stdout line."""

    def done(self, summary: str) -> None:
        """The outputs are written: `summary` says how long, on which device, where."""

    def error(self, message: str) -> None:
        """The engine's one-line error (the run then fails with it)."""

    def status(self, text: str) -> None:
        """About once a second while the engine runs: the last progress message with the time
        elapsed and left as of now (:meth:`RunClock.text`), for a status line that has no timer."""


def _message(event: dict) -> str:
    return str(event.get("message", ""))


def _progress(reporter: RunReporter, event: dict, clock: Optional[RunClock] = None) -> None:
    try:
        fraction = min(1.0, max(0.0, float(event.get("fraction", 0.0))))
    except (TypeError, ValueError):
        return
    message = _message(event)
    reporter.progress(fraction, clock.describe(fraction, message) if clock is not None else message)


_HANDLERS: Dict[str, Callable[[RunReporter, dict], None]] = {
    contract.START: lambda reporter, event: reporter.start(
        f"Engine started: {event.get('frames')} frames, model {event.get('model')}, "
        f"device {event.get('device')}"),
    contract.WARNING: lambda reporter, event: reporter.warning(_message(event)),
    contract.LOG: lambda reporter, event: reporter.log(_message(event)),
    contract.STDERR: lambda reporter, event: reporter.log(_message(event)),
    contract.DONE: lambda reporter, event: reporter.done(
        f"Done in {event.get('seconds')} s on {event.get('device')}: {event.get('output')}"),
    contract.ERROR: lambda reporter, event: reporter.error(_message(event)),
}


def dispatch(event: dict, reporter: RunReporter, clock: Optional[RunClock] = None) -> None:
    """Hand one engine event to the reporter method of its name (unknown events are ignored);
    with a `clock`, progress messages say the time elapsed and about how long is left."""
    if event.get("event") == contract.PROGRESS:
        _progress(reporter, event, clock)
        return
    handler = _HANDLERS.get(event.get("event"))
    if handler is not None:
        handler(reporter, event)


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: the engine's result and, on success, what it produced."""

    result: EngineResult
    sr: Optional[str] = None
    uncertainty: Optional[str] = None
    device: str = ""
    """The device the engine really ran on (from its ``done`` event)."""
    seconds: Optional[float] = None
    gpu_fallback: bool = False
    """A GPU was asked for but the engine ran elsewhere."""
    frames_used: Optional[int] = None
    """How many frames the engine fused (its ``done`` event, else its ``start`` event, from an older
    engine: fully cloudy frames are dropped before the start, frames far noisier than the others after)."""

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def canceled(self) -> bool:
        return self.result.canceled

    @property
    def error(self) -> Optional[str]:
        return self.result.error

    @property
    def warnings(self) -> Sequence[str]:
        return self.result.warnings


def resolve(result: EngineResult, params: RunParameters) -> RunOutcome:
    """The outcome of `result`: the paths the engine reports in ``done`` (else the planned ones)
    and the device it used."""
    if not result.ok:
        return RunOutcome(result)
    done = result.done or {}
    uncertainty = done.get("uncertainty") or (params.uncertainty if params.write_uncertainty else None)
    device = str(done.get("device") or (result.start or {}).get("device") or "?")
    return RunOutcome(result, sr=done.get("output") or params.output, uncertainty=uncertainty or None,
                      device=device, seconds=done.get("seconds"),
                      gpu_fallback=params.device.startswith("cuda") and not device.startswith("cuda"),
                      frames_used=_count(done.get("frames", (result.start or {}).get("frames"))))


def _count(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def execute(run: PreparedRun, reporter: RunReporter, is_canceled: Optional[Callable[[], bool]] = None,
            clock: Optional[RunClock] = None) -> RunOutcome:
    """Run the engine to the end (or until `is_canceled()`), reporting its events; after a
    failure or a cancel no file of the run remains (nor its temporary folder). Progress messages
    say the time elapsed and, once the network's work moves, about how long is left (`clock`:
    one the caller reads too, else a new one)."""
    clock = clock or RunClock()
    result = run_engine(run.argv, run.plan.paths, lambda event: dispatch(event, reporter, clock), is_canceled,
                        on_wait=lambda: reporter.status(clock.text()))
    if not result.ok:
        run.plan.discard()
    return resolve(result, run.params)
