"""What naming one date (``--reference-frame``) costs where nothing changed (VALIDATION scenes).

Scenes of the evidence sets without a changed field (where a field changed the target is the
clear-temporal mean, which naming a date departs from by design: the surface-change sets and the
changed stacks of the low-contrast set are left out). Per scene the SR is made as the
engine makes it and again showing frame `--frame` (``inference.frame_state``); printed per set:
the cPSNR change (named minus mean) with its 95% paired bootstrap interval, and the mean
|difference| of the two SRs in % of the level.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/frame_state_study.py | tee docs/evaluation/frame_state_validation.log
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from misr_engine.evaluation.adaptation import evidence_scenes, paired_interval, scene_score
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack

SETS = ("in-distribution", "out-of-range", "low-contrast")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--frame", type=int, default=0, help="the frame named (index in the stack)")
    args = parser.parse_args()
    model = load_model("piunet").model
    cpu = torch.device("cpu")
    for set_name in args.sets:
        scenes = evidence_scenes(set_name, "validation", args.scenes, 64)
        mean_scores, named_scores, moved = [], [], []
        unchanged = [not np.any(change) for change in scenes["change"]]
        for frames, masks, hr in (scene for scene, keep in zip(zip(scenes["frames"], scenes["masks"], scenes["hr"]),
                                                                unchanged) if keep):
            stack = Stack.in_memory(frames, masks)
            mean = super_resolve(stack, model, cpu)[0]
            named = super_resolve(stack, model, cpu, state=args.frame)[0]
            mean_scores.append(scene_score(mean, hr))
            named_scores.append(scene_score(named, hr))
            moved.append(100 * float(np.nanmean(np.abs(named - mean)) / np.nanmean(mean)))
        change, low, high = paired_interval(named_scores, mean_scores)
        print(f"{set_name}: {sum(unchanged)} of {args.scenes} scenes without change, frame {args.frame} named: {np.mean(named_scores):.3f} dB against "
              f"{np.mean(mean_scores):.3f}, change {change:+.3f} [{low:+.3f}, {high:+.3f}]; the SR moved "
              f"{np.mean(moved):.3f}% of the level on average (worst {max(moved):.3f}%)", flush=True)


if __name__ == "__main__":
    main()
