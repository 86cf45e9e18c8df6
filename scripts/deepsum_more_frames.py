"""DeepSUM with more frames than its N: sliding windows over all of them against the N clearest.

    python scripts/deepsum_more_frames.py [--weights W] [--scenes 8] [--frames 15] [--out FILE]

Scenes of the validation window (where choices are made), simulated with more frames than the
network's N; each scene super-resolved through the engine's tiled inference (registration
included) three ways: every frame (sliding windows of N - 1 frames after the clearest), only the
N clearest frames given (rotations of them), and the N clearest in one pass. Prints JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from misr_engine.evaluation.metrics import cpsnr
from misr_engine.evaluation.sets import SETS
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.registry import build_model
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack

RANGE = 10000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights")
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--frames", type=int, default=15)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model("deepsum", args.weights).model
    one_pass = build_model("deepsum", dataclasses.replace(model.config, passes=1).to_dict())
    one_pass.load_state_dict(model.state_dict())
    one_pass.eval()
    chosen = dataclasses.replace(SETS["validation"], frames=args.frames, lr_size=48, seed=16,
                                 description=f"validation window, B02 B03 B04 B08, {args.frames} frames, 48 x 48 LR, seed 16")
    scenes = chosen.scenes(args.scenes, workers=1)
    n = model.config.n_frames
    scores: dict[str, list[float]] = {"all_frames_sliding_windows": [], "n_clearest_given": [],
                                      "n_clearest_one_pass": []}
    for frames, masks, hr in zip(scenes["frames"], scenes["masks"], scenes["hr"]):
        clearest = np.sort(np.argsort(-masks.mean(axis=(1, 2)), kind="stable")[:n])
        for name, network, index in (("all_frames_sliding_windows", model, np.arange(len(frames))),
                                     ("n_clearest_given", model, clearest),
                                     ("n_clearest_one_pass", one_pass, np.arange(len(frames)))):
            sr = super_resolve(Stack.in_memory(frames[index], masks[index]), network, torch.device("cpu"))[0]
            scores[name].append(cpsnr(sr / RANGE, hr / RANGE))
    margins = np.array(scores["all_frames_sliding_windows"]) - np.array(scores["n_clearest_given"])
    result = {"scenes": len(scenes["hr"]), "frames": args.frames, "n": n, "set": chosen.description,
              **{name: round(float(np.mean(v)), 3) for name, v in scores.items()},
              "all_minus_n_clearest_per_scene": [round(float(m), 3) for m in margins]}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
