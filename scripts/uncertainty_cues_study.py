"""How far can an uncertainty map rank a scene's errors? (issue 14 item 4: per-scene Spearman)

On VALIDATION scenes (``misr evaluate``'s `validation` set: validation window, training ranges,
9 frames, 64 x 64 LR), the shipped network's SR and predicted Laplace scale are computed as a run
computes them; |error| is taken after the cPSNR alignment (as the report does). Per scene, the
Spearman rank correlation with |error| of:

* head: the network's predicted scale (what the engine writes);
* gradient / local std / head x gradient: hand-made cues from the SR itself (Sobel magnitude,
  5 x 5 standard deviation), the obvious post-hoc alternatives or add-ons to the head;
* neighbours' true error: the TRUE |error| of the surrounding pixels (Gaussian weights, sigma
  1.5 HR px, the pixel itself left out): no method can know it; it bounds what a map that knows
  the local error level, but not the pixel's own noise, can reach.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/uncertainty_cues_study.py --scenes 16 \\
        | tee docs/evaluation/uncertainty_cues_validation.log
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from misr_engine.evaluation.metrics import best_alignment, spearman
from misr_engine.evaluation.scores import BORDER, on_aligned_pixels, scenes_of
from misr_engine.evaluation.sets import SETS
from misr_engine.evaluation.statistics import bootstrap_mean
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack
from scipy import ndimage

NEIGHBOUR_SIGMA = 1.5  # HR px


def neighbours_mean(values: np.ndarray, valid: np.ndarray, sigma: float = NEIGHBOUR_SIGMA) -> np.ndarray:
    """Gaussian-weighted mean of `values` over the valid neighbours of each pixel, itself excluded."""
    radius = int(np.ceil(3 * sigma))
    axis = np.arange(-radius, radius + 1)
    weights = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma ** 2))
    weights[radius, radius] = 0.0
    total = ndimage.convolve(np.where(valid, values, 0.0), weights, mode="constant")
    count = ndimage.convolve(valid.astype(np.float64), weights, mode="constant")
    return total / np.maximum(count, 1e-12)


def cues(sr: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
    """Uncertainty maps computable without the truth, on the SR's grid."""
    sr = sr.astype(np.float64)
    gradient = np.hypot(ndimage.sobel(sr, 0), ndimage.sobel(sr, 1))
    local_std = np.sqrt(np.maximum(ndimage.uniform_filter(sr ** 2, 5) - ndimage.uniform_filter(sr, 5) ** 2, 0.0))
    return {"head": scale, "gradient": gradient, "local std": local_std,
            "head x gradient": scale * (gradient + np.median(gradient))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--set", default="validation")
    args = parser.parse_args()
    loaded = load_model("piunet")
    print(f"weights {loaded.sha256[:12]}, set {args.set} ({SETS[args.set].description}), {args.scenes} scenes")
    rows: dict[str, list[float]] = {}
    for index, scene in enumerate(scenes_of(SETS[args.set].scenes(args.scenes, workers=1))):
        sr, scale = super_resolve(Stack.in_memory(scene.frames, scene.masks), loaded.model, torch.device("cpu"))
        best = best_alignment(sr.astype(np.float64), scene.hr.astype(np.float64), scene.hr_mask, BORDER)
        error = np.where(best.mask, np.abs(best.hr - best.sr), 0.0)
        maps = {name: on_aligned_pixels(best, m) for name, m in cues(sr, scale).items()}
        maps["neighbours' true error"] = neighbours_mean(error, best.mask)[best.mask]
        scores = {name: spearman(m, error[best.mask]) for name, m in maps.items()}
        for name, value in scores.items():
            rows.setdefault(name, []).append(value)
        print(f"scene {index:2d}: " + ", ".join(f"{name} {value:.3f}" for name, value in scores.items()), flush=True)
    print("\nper-scene Spearman with |error|, mean [95% bootstrap interval over scenes]:")
    for name, values in rows.items():
        print(f"  {name:24s} {bootstrap_mean(values).format(3, signed=False)}")


if __name__ == "__main__":
    main()
