"""`misr evaluate`: networks and the classical baselines on the evaluation sets, as one report."""

from __future__ import annotations

import argparse
import sys

from .options import DeprecatedAlias, add_model, add_output


def _set_names() -> str:
    from ..evaluation.sets import REPORTED, SETS
    text = "; ".join(f"{name}{' (default)' if name in REPORTED else ''}: {s.description}" for name, s in SETS.items())
    return text.replace("%", "%%")  # argparse formats help strings with %


def add(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score a model and the classical baselines on the evaluation sets",
        description="Run the classical baselines, the strongest of them per scene and the network(s) on "
                    "evaluation sets drawn with fixed seeds (test window of the Sentinel-2 bands, the unseen "
                    "20 m bands, degradations outside the training ranges, surface change, the real sample; "
                    "`validation` for every choice) and write one Markdown report (summary table with "
                    "bootstrap intervals, a section per set, figures) and results.json.")
    p.add_argument("--sets", metavar="A,B", type=lambda text: [s for s in text.split(",") if s],
                   help="comma-separated sets (default: every reported set, or none with --data): " + _set_names())
    p.add_argument("--scenes", type=int, metavar="N", help="at most N scenes per set (default: each set's 32)")
    from ..evaluation.sets import FRAME_COUNTS
    p.add_argument("--frames", type=int, metavar="N",
                   help=f"draw every simulated set with N frames per scene ({FRAME_COUNTS[0]} to {FRAME_COUNTS[1]}; "
                        "default: each set's own, in its description) to see what a stack of your size gains; the "
                        "sample and --data keep theirs")
    p.add_argument("--data", metavar="FILE", help="also the scenes of FILE (`misr make-dataset --raw`), as set `data`")
    add_model(p, "evaluate")
    add_output(p, "report folder (default: evaluation)", metavar="DIR", default="evaluation", overwrite=False)
    p.add_argument("--out", action=DeprecatedAlias, dest="output", new="--output")
    p.add_argument("--compare", nargs="+", default=[], metavar="FILE",
                   help="other weights of --model (e.g. trained with another loss) to score beside it")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N, or auto (GPU if present)")
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> None:
    from ..evaluation.evaluate import evaluate_weights

    report = evaluate_weights(args.model, args.weights, args.output, args.sets, args.scenes, args.data, args.compare,
                              args.device, log=lambda line: print(line, file=sys.stderr, flush=True),
                              frames=args.frames)
    print(f"wrote {report}", file=sys.stderr)
