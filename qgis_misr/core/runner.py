"""Running the engine as a subprocess: JSON progress events in, cancel out.

Used by core.run, for the dialog's task and the Processing algorithm alike. Cancelling sends
SIGTERM (the engine then deletes its temporary files and exits with status 130) and, if the
engine has not stopped after a grace period, kills it; any file the run created is removed
afterwards.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Callable, Dict, List, Mapping, Optional, Sequence, Set

from . import contract
from .contract import ERROR_PREFIX
from .engine import IS_WINDOWS, popen_flags, subprocess_environment

TERMINATE_GRACE_S = 10.0
WAIT_CALL_S = 1.0
"""How often `run_engine` calls its `on_wait` while the engine runs (seconds)."""


@dataclass
class EngineResult:
    """How a run ended. ``error`` is one line for people (None on success)."""

    returncode: Optional[int]
    canceled: bool = False
    start: Optional[dict] = None
    done: Optional[dict] = None
    error: Optional[str] = None
    warnings: List[str] = field(default_factory=list)
    stderr_tail: List[str] = field(default_factory=list)
    killed: bool = False
    removed: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == contract.EXIT_OK and not self.canceled and self.error is None


def error_message(returncode: Optional[int], error_event: Optional[str],
                  stderr_lines: Sequence[str]) -> str:
    """The engine's one-line explanation: its last ``error`` event, else its
    ``misr: error: ...`` stderr line, else its last stderr line, else the exit status."""
    if error_event:
        return error_event
    lines = [line.strip() for line in stderr_lines if line.strip()]
    for line in reversed(lines):
        if line.startswith(ERROR_PREFIX):
            return line[len(ERROR_PREFIX):].strip()
    if lines:
        return lines[-1]
    if returncode is not None and returncode < 0:
        return f"the engine was stopped by signal {-returncode}"
    return f"the engine exited with status {returncode}"


class EngineProcess:
    """One engine subprocess with its stdout parsed into events on a queue."""

    def __init__(self, argv: Sequence[str], env: Optional[Mapping[str, str]] = None,
                 cwd: Optional[str] = None):
        self.argv = list(argv)
        self.env = subprocess_environment(env)
        self.cwd = cwd
        self.process: Optional[subprocess.Popen] = None
        self.events: "queue.Queue[dict]" = queue.Queue()
        self.stderr_tail: deque = deque(maxlen=200)
        self._readers: List[threading.Thread] = []

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=self.env, cwd=self.cwd, universal_newlines=True, encoding="utf-8",
            errors="replace", bufsize=1, **popen_flags())
        for target, stream in ((self._read_stdout, self.process.stdout),
                               (self._read_stderr, self.process.stderr)):
            thread = threading.Thread(target=target, args=(stream,), daemon=True)
            thread.start()
            self._readers.append(thread)

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict) or "event" not in event:
                event = {"event": contract.LOG, "message": line}
            self.events.put(event)
        stream.close()

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip()
            if line:
                self.stderr_tail.append(line)
                self.events.put({"event": contract.STDERR, "message": line})
        stream.close()

    @property
    def finished(self) -> bool:
        return (self.process is not None and self.process.poll() is not None
                and not any(t.is_alive() for t in self._readers))

    def terminate(self, grace_s: float = TERMINATE_GRACE_S) -> bool:
        """Ask the engine to stop (SIGTERM; CTRL_BREAK on Windows), kill it after `grace_s`.
        Returns True when it had to be killed."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return False
        try:
            if IS_WINDOWS:
                proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
            else:
                os.killpg(proc.pid, signal.SIGTERM)
        except (OSError, ValueError):
            proc.terminate()
        try:
            proc.wait(timeout=grace_s)
            return False
        except subprocess.TimeoutExpired:
            pass
        try:
            if IS_WINDOWS:
                proc.kill()
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.wait()
        return True


def _snapshot(folders: Set[str]) -> Dict[str, Set[str]]:
    state = {}
    for folder in folders:
        try:
            state[folder] = set(os.listdir(folder))
        except OSError:
            state[folder] = set()
    return state


def remove_new_files(outputs: Sequence[str], before: Dict[str, Set[str]]) -> List[str]:
    """Remove the outputs and any file created beside them since `before` whose name
    contains an output's name (the engine's temporary files). Returns what was removed."""
    removed = []
    names = [os.path.basename(o) for o in outputs]
    stems = [os.path.splitext(n)[0] for n in names]
    for folder, old in before.items():
        try:
            current = set(os.listdir(folder))
        except OSError:
            continue
        for name in sorted(current - old):
            if any(stem and stem in name for stem in stems):
                path = os.path.join(folder, name)
                try:
                    if os.path.isfile(path) or os.path.islink(path):
                        os.remove(path)
                        removed.append(path)
                except OSError:
                    pass
    return removed


def _call(callback: Callable, *args) -> None:
    """Call a display callback; a display problem must not leave the engine orphaned."""
    try:
        callback(*args)
    except Exception:
        pass


def run_engine(argv: Sequence[str], outputs: Sequence[str] = (),
               on_event: Optional[Callable[[dict], None]] = None,
               is_canceled: Optional[Callable[[], bool]] = None,
               env: Optional[Mapping[str, str]] = None,
               grace_s: float = TERMINATE_GRACE_S, poll_s: float = 0.1,
               on_wait: Optional[Callable[[], None]] = None) -> EngineResult:
    """Run the engine to the end (or until `is_canceled()`), calling `on_event` for every
    JSON event (and ``stderr``/``log`` lines) and `on_wait` about once a second (`WAIT_CALL_S`:
    a status line whose time moves between events), both from the calling thread.

    After a cancel or a failure no file this run created beside `outputs` remains.
    """
    folders = {os.path.dirname(os.path.abspath(o)) for o in outputs if o}
    before = _snapshot(folders)
    engine = EngineProcess(argv, env=env)
    result = EngineResult(returncode=None)
    error_event = None
    try:
        engine.start()
    except OSError as exc:
        result.error = f"cannot start the engine {argv[0]}: {exc.strerror or exc}"
        return result
    waited = time.monotonic()
    while True:
        if on_wait is not None and time.monotonic() - waited >= WAIT_CALL_S:
            waited = time.monotonic()
            _call(on_wait)
        if not result.canceled and is_canceled is not None and is_canceled():
            result.canceled = True
            result.killed = engine.terminate(grace_s)
        try:
            event = engine.events.get(timeout=poll_s)
        except queue.Empty:
            if engine.finished and engine.events.empty():
                break
            continue
        kind = event.get("event")
        if kind == contract.START:
            result.start = event
        elif kind == contract.DONE:
            result.done = event
        elif kind == contract.WARNING:
            result.warnings.append(str(event.get("message", "")))
        elif kind == contract.ERROR:
            error_event = str(event.get("message", ""))
        if on_event is not None:
            _call(on_event, event)
    result.returncode = engine.process.wait()
    result.stderr_tail = list(engine.stderr_tail)
    if result.canceled:
        result.error = "canceled"
    elif result.returncode != contract.EXIT_OK:
        result.error = error_message(result.returncode, error_event, result.stderr_tail)
    elif result.done is None:
        result.error = error_message(result.returncode, error_event, result.stderr_tail) \
            if error_event else "the engine ended without reporting its result"
    if not result.ok:
        result.removed = remove_new_files([o for o in outputs if o], before)
    return result
