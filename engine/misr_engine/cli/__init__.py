"""The `misr` command line: one module per command, sharing option declarations (`options`)
and error behaviour (`app`): bad input gives one line `misr: error: <file>: <problem>` and exit
status 2, never a traceback. The commands only parse; the work is done by the engine's packages.

This module stays light: `main` installs the signal handlers before the heavy imports (numpy and
GDAL take about 0.6 s, torch another second), so that Ctrl-C, SIGTERM (the QGIS plugin's Cancel)
or SIGHUP at any moment give exit status 130 and one line, never an import's traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run `misr ARGV` (default: sys.argv[1:]) and return its exit status."""
    from .. import signals

    restore = signals.interrupt_on_signals()
    try:
        with signals.deferred():  # a signal during the imports acts when they are done, not inside them
            from .app import main as run_command
        return run_command(argv)  # reports its own interruptions once the command line is parsed
    except BaseException:
        if signals.received() is None:
            raise
        return interrupted_before_start(sys.argv[1:] if argv is None else list(argv))
    finally:
        restore()


def interrupted_before_start(argv: list[str]) -> int:
    """Report an interruption that came before the command line was parsed (imports, parsing)."""
    from ..errors import EXIT_INTERRUPTED

    message = "interrupted; no output written"
    json_mode = any(a == "--progress=json" or (a == "--progress" and b == "json") for a, b in zip(argv, argv[1:] + [""]))
    if json_mode:
        print(json.dumps({"event": "error", "message": message}), flush=True)
    print(f"misr: error: {message}", file=sys.stderr)
    return EXIT_INTERRUPTED


def build_parser() -> Any:
    """The `misr` argument parser (`app.build_parser`)."""
    from .app import build_parser as build

    return build()


__all__ = ["build_parser", "main"]
