"""The `misr` command line: one module per command, sharing option declarations (`options`)
and error behaviour (`app`): bad input gives one line `misr: error: <file>: <problem>` and exit
status 2, never a traceback. The commands only parse; the work is done by the engine's packages."""

from .app import build_parser, main

__all__ = ["build_parser", "main"]
