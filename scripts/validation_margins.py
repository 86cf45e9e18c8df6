"""Per-scene margin of the shipped engine over the strongest classical pipeline, on VALIDATION scenes.

The report's margins (``misr evaluate``) are on the test window, for reporting only; this prints
the same figure on validation scenes, where failures may be studied and choices made: per set,
each scene's cPSNR through the whole pipeline, the strongest of the classical pipelines (chosen
with the target, as the report does) and the margin, then the mean, the worst scene and the
scenes lost. Out of range with 4 frames, as the report's set.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/validation_margins.py | tee docs/evaluation/validation_margins.log
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from misr_engine.evaluation.adaptation import evidence_scenes, scene_score
from misr_engine.evaluation.baselines import BASELINES, STRONGEST_CANDIDATES
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack

SETS = {"in-distribution": 9, "out-of-range": 4, "low-contrast": 9}  # frames per stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--weights", help="PIUnet weights (default: the shipped ones)")
    args = parser.parse_args()
    loaded = load_model("piunet", args.weights)
    print(f"weights {loaded.sha256[:12]}, validation window, {args.scenes} scenes per set, 64 x 64 LR")
    for set_name, frames in SETS.items():
        scenes = evidence_scenes(set_name, "validation", args.scenes, 64, frames)
        margins = []
        for index, (f, m, hr) in enumerate(zip(scenes["frames"], scenes["masks"], scenes["hr"])):
            network = scene_score(super_resolve(Stack.in_memory(f, m), loaded.model, torch.device("cpu"))[0], hr)
            classical = {name: scene_score(BASELINES[name](f, m), hr) for name in STRONGEST_CANDIDATES}
            strongest = max(classical, key=classical.get)
            margins.append(network - classical[strongest])
            print(f"{set_name} {index:2d}: network {network:.3f} dB, strongest {strongest} {classical[strongest]:.3f} dB, "
                  f"margin {margins[-1]:+.3f}, clear share {m.mean():.2f}", flush=True)
        print(f"{set_name} ({frames} frames): mean margin {np.mean(margins):+.3f} dB, worst {min(margins):+.3f}, "
              f"lost {sum(x < 0 for x in margins)} of {len(margins)}", flush=True)


if __name__ == "__main__":
    main()
