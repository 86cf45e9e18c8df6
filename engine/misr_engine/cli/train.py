"""`misr train`: train a network from a JSON config, resumably."""

from __future__ import annotations

import argparse
import sys

from .options import add_progress


def add(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a network (resumable) from a JSON config",
                              description="Train a network on stacks made by `misr make-dataset` (or, with "
                                          "\"model\": \"kernel_prior\", the prior over blur kernels); "
                                          "resumes from the checkpoint in the config's out_dir.")
    p.add_argument("--config", required=True, metavar="FILE", help="JSON training config (see configs/)")
    add_progress(p)
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> None:
    from ..progress import Progress
    from ..training.run import load_config, train_from_config

    config = load_config(args.config)
    progress = Progress(args.progress)
    args.progress_reporter = progress
    try:
        weights = train_from_config(config, log=progress.note,
                        on_step=lambda step, loss: progress.update(step / config.steps,
                                                                   f"step {step}/{config.steps}, loss {loss:.4f}"))
    finally:
        progress.close()
    print(f"wrote {weights}", file=sys.stderr)
