"""`misr evaluate`: a model and the classical baselines on held-out scenes, as a report."""

from __future__ import annotations

import argparse
import sys

from .options import DeprecatedAlias, add_model, add_output


def add(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score a model and the classical baselines on held-out scenes",
        description="Run every baseline and the model on held-out scenes (default: simulated, with "
                    "fixed seeds, from the held-out window of the Sentinel-2 sample) and write a "
                    "Markdown report with a table and figures.")
    p.add_argument("--data", metavar="FILE", help="scenes from `misr make-dataset --raw` (.npz)")
    p.add_argument("--scenes", type=int, default=24, help="number of generated scenes (default: 24)")
    add_model(p, "evaluate")
    add_output(p, "report folder (default: evaluation)", metavar="DIR", default="evaluation", overwrite=False)
    p.add_argument("--out", action=DeprecatedAlias, dest="output", new="--output")
    p.add_argument("--compare", nargs="+", default=[], metavar="FILE",
                   help="other weights of --model (e.g. trained with another loss) to compare in the report")
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> None:
    from ..evaluation.evaluate import evaluate_weights

    report = evaluate_weights(args.model, args.weights, args.output, args.data, args.scenes, args.compare)
    print(f"wrote {report}", file=sys.stderr)
