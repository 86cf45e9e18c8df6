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
from misr_engine.evaluation.statistics import strongest_per_scene
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
        network, classical = [], {name: [] for name in STRONGEST_CANDIDATES}
        for f, m, hr in zip(scenes["frames"], scenes["masks"], scenes["hr"]):
            network.append(scene_score(super_resolve(Stack.in_memory(f, m), loaded.model, torch.device("cpu"))[0], hr))
            for name, scores in classical.items():
                scores.append(scene_score(BASELINES[name](f, m), hr))
        strongest, names = strongest_per_scene(classical, STRONGEST_CANDIDATES)
        margins = np.asarray(network) - strongest
        for index, masks in enumerate(scenes["masks"]):
            print(f"{set_name} {index:2d}: network {network[index]:.3f} dB, strongest {names[index]} "
                  f"{strongest[index]:.3f} dB, margin {margins[index]:+.3f}, clear share {masks.mean():.2f}")
        print(f"{set_name} ({frames} frames): mean margin {margins.mean():+.3f} dB, worst {margins.min():+.3f}, "
              f"lost {int((margins < 0).sum())} of {len(margins)}", flush=True)

if __name__ == "__main__":
    main()
