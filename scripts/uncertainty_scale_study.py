"""Is the uncertainty's scale off by a factor a constant or a scene observable could correct?

On VALIDATION scenes only: per scene, k = mean(|error| / b) (the Laplace-NLL-optimal factor on
the predicted scale b; 1 when calibrated) beside scene observables (noise over spread, the LR
residual of the SR re-observed at the frames' phases over the noise, the mean b over the noise);
per set, the pooled coverage of the central Laplace intervals, as given and with the set's k.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/uncertainty_scale_study.py --out rows.json \
        in-distribution:64 out-of-range:64 low-contrast:64 coarse-bands-out-of-range:32

(docs/evaluation/uncertainty_scale_validation.log)
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from misr_engine.evaluation.adaptation import evidence_scenes
from misr_engine.evaluation.baselines import engine_prepared
from misr_engine.evaluation.metrics import (
    best_alignment,
    laplace_calibration,
    lr_fidelity,
)
from misr_engine.evaluation.scores import on_aligned_pixels
from misr_engine.inference.normalisation import Normalisation
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.backprojection import PSF_SIGMA
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack


def scene_row(model: torch.nn.Module, frames: np.ndarray, masks: np.ndarray, hr: np.ndarray
              ) -> tuple[dict, np.ndarray, np.ndarray]:
    """One scene's k and observables, and its |error| and b on the clear aligned pixels."""
    sr, scale = super_resolve(Stack.in_memory(frames, masks), model, torch.device("cpu"))
    best = best_alignment(sr, hr)
    error, predicted = np.abs(best.error)[best.mask], on_aligned_pixels(best, scale)
    usable = np.isfinite(error) & np.isfinite(predicted) & (predicted > 0)
    error, predicted = error[usable], predicted[usable]
    norm = Normalisation.of(frames, masks)
    prepared = engine_prepared(frames, masks)
    psnr = lr_fidelity(sr, prepared.frames, prepared.masks, prepared.phases, PSF_SIGMA)
    frame_noise = float(np.median([n for n in norm.frame_noise if n > 0])) if norm.frame_noise else norm.noise
    return dict(k=float(np.mean(error / predicted)), spread=norm.spread, noise=norm.noise, frame_noise=frame_noise,
                resid=float(np.sqrt(np.nanmedian(10 ** (-psnr / 10)))), scale=float(np.nanmean(scale)),
                err=float(np.mean(error))), error, predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", help="SET:LR_SIZE, validation evidence sets")
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--seed", type=int, default=53)
    parser.add_argument("--out", required=True, help="JSON file for the per-scene rows")
    args = parser.parse_args()
    model = load_model("piunet").model
    rows = []
    for spec in args.sets:
        name, size = spec.split(":")
        scenes = evidence_scenes(name, "validation", args.scenes, int(size), 9, seed=args.seed)
        errors, scales = [], []
        for frames, masks, hr in zip(scenes["frames"], scenes["masks"], scenes["hr"]):
            row, error, predicted = scene_row(model, frames, masks, hr)
            rows.append({"set": name, **row})
            errors.append(error)
            scales.append(predicted)
        error, predicted = np.concatenate(errors), np.concatenate(scales)
        pooled = float(np.mean(error / predicted))
        print(f"{name}: pooled k {pooled:.3f}, coverage {laplace_calibration(error, predicted)[1].round(3)}, "
              f"with k {laplace_calibration(error, pooled * predicted)[1].round(3)}", flush=True)
    with open(args.out, "w") as handle:
        json.dump(rows, handle)


if __name__ == "__main__":
    main()
