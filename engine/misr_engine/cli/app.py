"""`misr`'s parser and its one error behaviour: a MisrError is one line and exit status 2, an
interruption (SIGINT, SIGTERM, SIGHUP: `signals`) exit status 130, a bug one line and exit status 1."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Callable, Sequence

from .. import __version__, signals
from ..errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, MisrError
from . import adapt, batch, bench, data, demo, evaluate, export, info, super_resolve, train

COMMANDS = (super_resolve, batch, demo, data, train, adapt, evaluate, info, export, bench)
"""The modules of the commands, each with `add(subparsers)`, in the order `misr --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="misr", description="Multi-image super-resolution (x3) of satellite time series.")
    parser.add_argument("--version", action="version", version=f"misr {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the command (the signal handlers are installed by `cli.main`)."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # library warnings: one line each, through the progress channel
            warnings.showwarning = _warning_printer(args)
            args.command(args)
        return EXIT_OK
    except KeyboardInterrupt:
        return _interrupted(args)
    except MisrError as exc:
        return _interrupted(args) if signals.received() else _fail(args, str(exc), EXIT_BAD_INPUT)
    except MemoryError:
        return _fail(args, "out of memory: try a smaller --tile-size or fewer --max-frames", EXIT_BAD_INPUT)
    except Exception as exc:  # a bug: still one line, traceback on request
        if signals.received():  # a library turned the KeyboardInterrupt into its own error
            return _interrupted(args)
        if os.environ.get("MISR_DEBUG"):
            raise
        return _fail(args, f"internal error: {exc.__class__.__name__}: {exc} "
                           "(set MISR_DEBUG=1 for a traceback)", EXIT_INTERNAL)


def _interrupted(args: argparse.Namespace) -> int:
    return _fail(args, getattr(args, "interrupted", "interrupted; no output written"), EXIT_INTERRUPTED)


def _warning_printer(args: argparse.Namespace) -> Callable[..., None]:
    def show(message: Warning | str, category: type, *rest: object, **kwargs: object) -> None:
        text = (str(message).strip().splitlines() or [category.__name__])[0]
        reporter = getattr(args, "progress_reporter", None)
        if reporter is not None:
            reporter.event("warning", message=text)
        else:
            print(f"misr: warning: {text}", file=sys.stderr)
    return show


def _fail(args: argparse.Namespace, message: str, status: int) -> int:
    reporter = getattr(args, "progress_reporter", None)
    if reporter is not None:
        reporter.close()
        if reporter.mode == "json":
            reporter.event("error", message=message)
    elif getattr(args, "progress", None) == "json":
        print(json.dumps({"event": "error", "message": message}), flush=True)
    print(f"misr: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
