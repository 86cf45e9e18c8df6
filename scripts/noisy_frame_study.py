"""One frame of each scene made N times as noisy as the others (a hazy or dark date, another
sensor): the engine's SR with that frame against the SR of the other frames alone, per ratio,
with the 95% paired bootstrap interval over scenes, on VALIDATION scenes: how the engine's rule
for frames far noisier than the others (``tiled.leave_out_noisy``, ``LEAVE_OUT_RATIO``) was
chosen; `--split test` reports it once chosen.

    OMP_NUM_THREADS=1 PYTHONPATH=engine .venv/bin/python scripts/noisy_frame_study.py \\
        --set in-distribution --scenes 12 --frames 9 --ratios 2 3 5 10 --out noisy.json

Both runs keep every frame (``keep_noisy_frames``): the comparison is of the two stacks, not of
the rule. "measured" is the ratio the engine's own estimate gives the noisy frame.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from misr_engine.evaluation.adaptation import (
    evidence_scenes,
    paired_interval,
    scene_score,
)
from misr_engine.inference.normalisation import Normalisation
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="in-distribution")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--split", choices=["validation", "test"], default="validation",
                        help="test: to report the rule once chosen, never to choose it")
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0, 10.0],
                        help="the noisy frame's noise over the median frame's (1: no noise added, the cost of a frame)")
    parser.add_argument("--out", required=True, help="JSON file of the per-scene scores")
    args = parser.parse_args()
    model = load_model("piunet").model
    scenes = evidence_scenes(args.set, args.split, args.scenes, 64, args.frames)
    rows = []
    for index, (frames, masks, hr) in enumerate(zip(scenes["frames"], scenes["masks"], scenes["hr"])):
        rows.append(scene_row(model, index, np.asarray(frames, np.float64), np.asarray(masks, bool), hr, args.ratios))
        with open(args.out, "w") as file:
            json.dump(rows, file, indent=1)
        print(index, {r: rows[-1][str(r)] for r in args.ratios}, flush=True)
    for ratio in args.ratios:
        kept, left_out = ([row[str(ratio)][key] for row in rows] for key in ("kept", "left out"))
        mean, low, high = paired_interval(left_out, kept)
        measured = np.median([row[str(ratio)]["measured"] for row in rows])
        print(f"{args.set} ({args.split}), {args.frames} frames, ratio {ratio:g} (measured median {measured:.2f}): "
              f"left out - kept {mean:+.3f} dB [{low:+.3f}, {high:+.3f}]")


def scene_row(model: torch.nn.Module, index: int, frames: np.ndarray, masks: np.ndarray, hr: np.ndarray,
              ratios: list[float]) -> dict:
    """One scene's scores: per ratio, the SR with the noisy frame (kept) and without it (left out)."""
    frame_noise = np.asarray(Normalisation.of(frames, masks).frame_noise)
    noise = float(np.median(frame_noise[frame_noise > 0]))
    rng = np.random.default_rng(100 + index)
    noisy = index % len(frames)
    others = np.arange(len(frames)) != noisy
    row: dict = {"scene": index, "frame": noisy, "noise": noise}
    for ratio in ratios:
        changed = frames.copy()
        changed[noisy] += rng.normal(0.0, noise * np.sqrt(ratio * ratio - 1.0), changed[noisy].shape)
        changed = changed.astype(np.float32)
        measured = dict(Normalisation.of(changed, masks).noisy_frames(1.0)).get(noisy, 0.0)
        kept, left_out = (scene_score(super_resolve(Stack.in_memory(f, m), model, torch.device("cpu"),
                                                    keep_noisy_frames=True)[0], hr)
                          for f, m in ((changed, masks), (changed[others], masks[others])))
        row[str(ratio)] = {"kept": kept, "left out": left_out, "measured": measured}
    return row


if __name__ == "__main__":
    main()
