"""Should the scene spread have a floor relative to the level? (VALIDATION scenes)

The network works in scene units, (value - centre) / spread. Training noise is relative to the
level, so on a low-contrast scene (water, desert, haze) the same noise is many spreads large:
more than any training stack showed. A floor, spread >= k x |centre|, keeps the noise within the
training's units at the cost of fainter detail. For each candidate k the shipped network runs as
the engine runs it (``normalisation.MIN_RELATIVE_SPREAD`` set to k) on validation scenes:
misr evaluate's `validation` set and the validation-window evidence sets out of range, surface
change and low contrast; cPSNR on reflectance, the change against no floor with its 95% paired
bootstrap interval, and registration + mean beside it.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/normalisation_floor_study.py \\
        | tee docs/evaluation/normalisation_floor_validation.log
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from misr_engine.evaluation.adaptation import (
    evidence_scenes,
    paired_interval,
    scene_score,
)
from misr_engine.evaluation.baselines import registered_mean
from misr_engine.evaluation.sets import SETS
from misr_engine.inference import normalisation
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack

FLOORS = (0.0, 0.05, 0.1, 0.2, 0.3)
EVIDENCE = ("out-of-range", "surface-change", "low-contrast")


def with_floor(k: float) -> None:
    """Set the engine's floor: spread >= k x |centre| (0: the spread from the scene alone)."""
    normalisation.MIN_RELATIVE_SPREAD = k


def scene_sets(count: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    validation = SETS["validation"].scenes(count, workers=1)
    sets = {"validation (training ranges)": (validation["frames"], validation["masks"], validation["hr"])}
    for name in EVIDENCE:
        scenes = evidence_scenes(name, "validation", count)
        sets[name] = (scenes["frames"], scenes["masks"], scenes["hr"])
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--model", default="piunet")
    args = parser.parse_args()
    loaded = load_model(args.model)
    print(f"{args.model} {loaded.sha256[:12]}, validation window, {args.scenes} scenes per set")
    for set_name, (frames, masks, hrs) in scene_sets(args.scenes).items():
        scores: dict[float, list[float]] = {}
        for k in FLOORS:
            with_floor(k)
            scores[k] = [scene_score(super_resolve(Stack.in_memory(f, m), loaded.model, torch.device("cpu"))[0], hr)
                         for f, m, hr in zip(frames, masks, hrs)]
        classical = [scene_score(registered_mean(f, m), hr) for f, m, hr in zip(frames, masks, hrs)]
        print(f"\n{set_name}: no floor {np.mean(scores[0.0]):.3f} dB, registration + mean {np.mean(classical):.3f} dB")
        for k in FLOORS[1:]:
            mean, low, high = paired_interval(scores[k], scores[0.0])
            print(f"  floor {k:4.2f} x level: {np.mean(scores[k]):.3f} dB, {mean:+.3f} [{low:+.3f}, {high:+.3f}], "
                  f"better on {sum(a > b for a, b in zip(scores[k], scores[0.0]))}/{len(hrs)}", flush=True)


if __name__ == "__main__":
    main()
