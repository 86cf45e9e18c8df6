"""Per-scene cPSNR of the engine as checked out, on VALIDATION scenes, and the paired change
against another checkout's scores: how an engine change moves the SR's quality.

Run it once per checkout (PYTHONPATH pointing at that checkout's engine), each writing its
scores; the second run, given the first's file, prints per set the change (this checkout minus
the other) with its 95% paired bootstrap interval over scenes, and how many scenes it changed by
more than 0.01 dB:

    OMP_NUM_THREADS=1 PYTHONPATH=/path/to/old/engine .venv/bin/python scripts/scene_scores.py --out old.json
    OMP_NUM_THREADS=1 .venv/bin/python scripts/scene_scores.py --out new.json --against old.json

or both at once (one core each), then ``--compare new.json old.json`` prints the same lines.
With ``--border`` each set is also scored on the outer 3 HR pixels that cPSNR crops (set name
``<set>/border``; ``screened_selection_study.border_psnr``): how a change moves the frames' edges.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import psf_sharpening_study
import torch
from misr_engine.evaluation.adaptation import (
    evidence_scenes,
    paired_interval,
    scene_score,
)
from misr_engine.inference import consistency, detail_gate
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack
from psf_limits_option import add_psf_limits_option, apply_psf_limits
from screened_selection_study import border_psnr

SETS = ("in-distribution", "out-of-range", "surface-change", "strong-change", "low-contrast")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first N scenes of each set's draw (fresh scenes for a new choice)")
    parser.add_argument("--split", choices=["validation", "test"], default="validation",
                        help="test: to report a change already chosen on validation, never to choose one")
    parser.add_argument("--lr-size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=9, help="frames per stack (4: the report's out-of-range set)")
    parser.add_argument("--model", default="piunet", help="the network")
    parser.add_argument("--weights", help="its weights file (default: the shipped weights)")
    parser.add_argument("--border", action="store_true", help="also score the outer 3 HR pixels (<set>/border)")
    parser.add_argument("--psf-sets", action="store_true",
                        help="register the sets of the PSF width studies too (sensor-0.01, sensor-0.5: frames "
                             "blurred by their pixels alone or 0.5 HR px; mid-blur, wide-blur), for --sets")
    parser.add_argument("--gate-ratios", metavar="LOW,HIGH",
                        help="run with the detail gate's ratios set to LOW,HIGH ('none': no gate) instead of "
                             "detail_gate.GATE_RATIOS (a study of the gate, as a --weights run is of the network)")
    parser.add_argument("--consistency-steps", type=int, metavar="N",
                        help="run with N back-projection steps after the gate (0: none) instead of "
                             "consistency.CONSISTENCY_STEPS")
    add_psf_limits_option(parser)
    parser.add_argument("--out", help="JSON file the scores are written to")
    parser.add_argument("--against", help="another checkout's scores (JSON from --out): print the paired change")
    parser.add_argument("--compare", nargs=2, metavar=("THIS", "OTHER"),
                        help="only print the change between two score files already written")
    args = parser.parse_args()
    if args.psf_sets:
        psf_sharpening_study.add_sets([0.01, 0.5])
    if args.compare:
        this, other = (read_scores(path) for path in args.compare)
        for set_name in this:
            print(summary(set_name, this[set_name], other))
        return
    if not args.out:
        parser.error("--out is needed to compute scores")
    if args.gate_ratios:
        detail_gate.GATE_RATIOS = None if args.gate_ratios == "none" else parse_ratios(args.gate_ratios)
    if args.consistency_steps is not None:
        consistency.CONSISTENCY_STEPS = args.consistency_steps
    apply_psf_limits(args.psf_limits)
    model = load_model(args.model, args.weights).model
    other = read_scores(args.against) if args.against else {}
    scores: dict[str, list[float]] = {}
    for set_name in args.sets:
        scenes = evidence_scenes(set_name, args.split, args.scenes, args.lr_size, args.frames, skip=args.skip)
        srs = [super_resolve(Stack.in_memory(frames, masks), model, torch.device("cpu"))[0] for frames, masks
               in zip(scenes["frames"], scenes["masks"])]
        scores[set_name] = [scene_score(sr, hr) for sr, hr in zip(srs, scenes["hr"])]
        names = [set_name]
        if args.border:
            scores[f"{set_name}/border"] = [border_psnr(sr, hr) for sr, hr in zip(srs, scenes["hr"])]
            names.append(f"{set_name}/border")
        with open(args.out, "w") as file:
            json.dump(scores, file, indent=1)
        for name in names:
            print(summary(name, scores[name], other), flush=True)


def parse_ratios(text: str) -> tuple[float, float]:
    """'LOW,HIGH' -> (LOW, HIGH), LOW < HIGH."""
    try:
        low, high = (float(value) for value in text.split(","))
    except ValueError:
        low = high = float("nan")
    if not 0.0 <= low < high:
        raise SystemExit(f"--gate-ratios {text}: LOW,HIGH with 0 <= LOW < HIGH")
    return low, high


def read_scores(path: str) -> dict[str, list[float]]:
    with open(path) as file:
        return json.load(file)


def summary(set_name: str, scores: list[float], other: dict[str, list[float]]) -> str:
    """One set's line: its mean cPSNR and, where `other` has the set, the paired change."""
    line = f"{set_name}: {len(scores)} scenes, {np.mean(scores):.3f} dB"
    if set_name in other:
        mean, low, high = paired_interval(scores, other[set_name])
        changed = int((np.abs(np.subtract(scores, other[set_name])) > 0.01).sum())
        line += (f"; other {np.mean(other[set_name]):.3f} dB, change {mean:+.3f} [{low:+.3f}, {high:+.3f}], "
                 f"{changed} scenes changed by more than 0.01 dB")
    return line


if __name__ == "__main__":
    main()
