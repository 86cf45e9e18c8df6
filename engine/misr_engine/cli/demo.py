"""`misr demo`: super-resolve the embedded sample scene and write a side-by-side preview."""

from __future__ import annotations

import argparse

from .options import DeprecatedAlias, add_model, add_progress


def add(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="super-resolve the embedded sample time series (a real Sentinel-2 NIR scene)",
        description="Write sr.tif, uncertainty.tif and preview.png (bicubic of the masked temporal mean | "
                    "SR | uncertainty | real 10 m reference, with their cPSNR) into the output folder, "
                    "replacing earlier demo outputs there.")
    p.add_argument("--output", "-o", default="demo_output", metavar="DIR",
                   help="output folder (default: demo_output)")
    p.add_argument("--out", action=DeprecatedAlias, dest="output", new="--output")
    add_model(p, "run")
    add_progress(p)
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ..demo import run_demo
    from ..progress import Progress

    args.progress_reporter = Progress(args.progress)
    print(run_demo(Path(args.output), args.model, args.weights, args.progress_reporter))
