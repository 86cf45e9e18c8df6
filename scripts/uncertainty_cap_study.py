"""Choose the cap on the predicted Laplace scale (``inference.tiled.MAX_LOG_SCALE``) on
VALIDATION scenes.

The network runs as the engine runs it, uncapped (the cap lifted to the overflow guard); each
candidate cap c (normalised log-scale: scale <= e^c scene spreads) is applied afterwards. Per
set (validation window, 12 scenes of 48 x 48 LR, 9 frames; `evaluation.adaptation` sets): the
Laplace negative log-likelihood of |error| after the cPSNR alignment (nats per pixel, lower is
better), the coverage of the 90% interval, the per-scene Spearman, the share of pixels the cap
binds on and the largest scale over the scene's level. Choice: the largest cap whose NLL summed
over the sets is within 0.001 nats of the best.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/uncertainty_cap_study.py \\
        | tee docs/evaluation/uncertainty_cap_validation.log
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from misr_engine.evaluation.adaptation import evidence_scenes
from misr_engine.evaluation.metrics import best_alignment, laplace_calibration, spearman
from misr_engine.evaluation.scores import BORDER, on_aligned_pixels
from misr_engine.inference import tiled
from misr_engine.inference.normalisation import Normalisation
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack

CAPS = (None, 2.0, 1.5, 1.0, 0.75, 0.5, 0.25)
TOLERANCE = 1e-3  # nats: caps this close to the best summed NLL count as equally good
INTERVAL = 0.9


def spreads_of_runs() -> list[float]:
    """Records the scene spread of every run (the units the log-scale is in)."""
    spreads: list[float] = []
    of_blocks = Normalisation.of_blocks.__func__

    def recording(cls, blocks):
        norm = of_blocks(cls, blocks)
        spreads.append(norm.spread)
        return norm
    Normalisation.of_blocks = classmethod(recording)
    return spreads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="piunet")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--sets", nargs="+", default=["in-distribution", "out-of-range", "surface-change"])
    parser.add_argument("--scenes", type=int, default=12)
    args = parser.parse_args()
    tiled.MAX_LOG_SCALE = tiled.LOG_SCALE_LIMIT  # uncapped: every cap is applied below
    spreads = spreads_of_runs()
    loaded = load_model(args.model)
    print(f"{args.model} {loaded.sha256[:12]}, {args.split} window, {args.scenes} scenes per set")
    totals = dict.fromkeys(CAPS, 0.0)
    for set_name in args.sets:
        scenes = evidence_scenes(set_name, args.split, args.scenes)
        rows: dict = {cap: {"nll": [], "covered": [], "spearman": [], "bound": [], "peak": []} for cap in CAPS}
        for frames, masks, hr in zip(scenes["frames"], scenes["masks"], scenes["hr"]):
            sr, scale = tiled.super_resolve(Stack.in_memory(frames, masks), loaded.model, torch.device("cpu"))
            best = best_alignment(sr.astype(np.float64), hr.astype(np.float64), None, BORDER)
            error = np.abs(best.error)[best.mask]
            uncapped = on_aligned_pixels(best, scale).astype(np.float64)
            level = float(np.nanmean(sr))
            for cap in CAPS:
                b = uncapped if cap is None else np.minimum(uncapped, np.exp(cap) * spreads[-1])
                rows[cap]["nll"].append(float(np.mean(np.log(2 * b) + error / b)))
                rows[cap]["covered"].append(float(laplace_calibration(error, b, (INTERVAL,))[1][0]))
                rows[cap]["spearman"].append(spearman(b, error))
                rows[cap]["bound"].append(float(np.mean(b < uncapped)))
                rows[cap]["peak"].append(float(b.max()) / level)
        print(f"\n{set_name}:")
        for cap, row in rows.items():
            totals[cap] += float(np.mean(row["nll"]))
            print(f"  cap {'none' if cap is None else f'{cap:g}':>5}: NLL {np.mean(row['nll']):.4f}, "
                  f"{INTERVAL:.0%} interval covers {100 * np.mean(row['covered']):.1f}%, "
                  f"Spearman {np.mean(row['spearman']):.3f}, binds on {100 * np.mean(row['bound']):.3f}% of pixels, "
                  f"largest scale {max(row['peak']):.3g} x the level", flush=True)
    best = min(totals.values())
    chosen = max((c for c in CAPS if c is not None and totals[c] <= best + TOLERANCE), default=None)
    print("\nNLL summed over the sets: " + ", ".join(f"{'none' if c is None else f'{c:g}'} {t:.4f}"
                                                  for c, t in totals.items()))
    print(f"chosen: {chosen} (the largest cap within {TOLERANCE} nats of the best)")


if __name__ == "__main__":
    main()
