"""Option declarations shared by the `misr` commands, so that they read alike (as rasterio's
`rio` commands do): -o/--output, --overwrite, --model/--weights, --device, --progress, --json."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..models.registry import DEFAULT_MODEL

PROGRESS_MODES = ("bar", "json", "none")


def add_output(parser: argparse.ArgumentParser, help: str, metavar: str = "FILE", default: str | None = None,
               overwrite: bool = True) -> None:
    """-o/--output (required unless it has a `default`), and --overwrite to replace it."""
    parser.add_argument("--output", "-o", required=default is None, default=default, metavar=metavar, help=help)
    if overwrite:
        parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def add_model(parser: argparse.ArgumentParser, verb: str = "use") -> None:
    """--model NAME and --weights FILE (default: the model's shipped weights)."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"network to {verb} (default: {DEFAULT_MODEL}; "
                                                               "see `misr models`)")
    parser.add_argument("--weights", metavar="FILE", help="weights file (default: the shipped weights of --model)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (GPU if present), cpu, cuda or cuda:N (default: auto)")


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", choices=PROGRESS_MODES, default="bar",
                        help="progress as a terminal bar (default), JSON lines on stdout, or nothing")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


class DeprecatedAlias(argparse.Action):
    """A hidden old spelling of an option: stores into the new one's destination, with a warning."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kwargs: Any):
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"misr: warning: {option_string} is deprecated and will be removed: use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)
