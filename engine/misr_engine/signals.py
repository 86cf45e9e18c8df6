"""The signals that interrupt a run (SIGINT, SIGTERM, SIGHUP): one behaviour from the first line
of the command line to the commit of its outputs.

`interrupt_on_signals` is installed before any heavy import (numpy, GDAL, torch). A signal then
raises KeyboardInterrupt (exit status 130, one line, no file left) and is remembered: a library
that swallows the KeyboardInterrupt, or turns it into another exception, cannot hide it, because
`check` raises it again before outputs are committed and the command line reads `received`.
`deferred` holds the signals over a section that must not be cut (committing outputs, creating a
partial file) or must not see a KeyboardInterrupt inside (the imports of numpy, GDAL and torch,
where it used to print an import's traceback, or be swallowed): they act when it ends.
A signal that the parent process ignores (`nohup`, SIGINT of a shell's background job) stays
ignored, as every Unix tool does.
"""

from __future__ import annotations

import signal
import threading
from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator

INTERRUPTING = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
"""The signals that stop a run: Ctrl-C, `kill` (the QGIS plugin's Cancel), a closed terminal."""

_received: list[int] = []


def interrupt_on_signals() -> Callable[[], None]:
    """Make every interrupting signal raise KeyboardInterrupt (and be remembered); returns a
    function that restores the previous handlers. Signals ignored by the parent stay ignored."""
    _received.clear()
    previous = {}
    for number in INTERRUPTING:
        handler = signal.getsignal(number)
        if handler == signal.SIG_IGN:
            continue
        previous[number] = handler
        signal.signal(number, _interrupt)

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return restore


def _interrupt(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def received() -> int | None:
    """The first interrupting signal received since `interrupt_on_signals`, or None."""
    return _received[0] if _received else None


def check() -> None:
    """Raise KeyboardInterrupt if a signal arrived, even if its exception was swallowed since."""
    if _received:
        raise KeyboardInterrupt(f"signal {_received[0]}")


@contextmanager
def deferred() -> Iterator[None]:
    """Hold the interrupting signals until the block ends, then deliver the first one to the
    handler that was in place (main thread only: elsewhere signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    with ExitStack() as restore:
        for number in INTERRUPTING:
            previous = signal.getsignal(number)
            if previous == signal.SIG_IGN:
                continue
            signal.signal(number, lambda signum, frame: held.append(signum))
            restore.callback(signal.signal, number, previous)
        yield
    for signum in held[:1]:
        handler = signal.getsignal(signum)
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)
