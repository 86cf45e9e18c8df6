"""The engine's command-line contract as the plugin reads it (docs/cli-contract.md), in one place:
the names of the JSON events of ``--progress json`` and the exit statuses.

They must equal the engine's own (``misr_engine.progress.EVENTS``, ``misr_engine.errors.EXIT_*``);
tests/plugin/test_contract.py compares them. The plugin never imports the engine, hence the copy.
"""

from __future__ import annotations

START = "start"
PROGRESS = "progress"
WARNING = "warning"
LOG = "log"
DONE = "done"
ERROR = "error"
EVENTS = (START, PROGRESS, WARNING, LOG, DONE, ERROR)
"""Every event the engine prints, one JSON object a line on stdout."""

STDERR = "stderr"
"""Not an engine event: the runner turns each line the engine writes on stderr into one."""

EXIT_OK = 0
EXIT_INTERNAL = 1
"""An unexpected failure (a traceback on stderr)."""
EXIT_BAD_INPUT = 2
"""A problem with the input, explained by an ``error`` event and one ``misr: error:`` line."""
EXIT_INTERRUPTED = 130
"""SIGINT or SIGTERM: the engine stopped and removed its partial files."""

ERROR_PREFIX = "misr: error:"
"""How the engine's one-line error starts on stderr."""
