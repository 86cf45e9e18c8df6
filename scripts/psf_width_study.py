"""The back-projection's PSF width per scene, on VALIDATION scenes (``inference/consistency.py``).

Every scene of a set is super-resolved by the engine with the back-projection's Gaussian PSF at
each width of a grid (the network runs once per scene; its tile outputs are cached), and the
gated SR before the back-projection is re-observed with each width against the clear prepared
frames (mean squared residual, per-frame bias removed): whether that misfit could pick the
width. Prints per set the mean gain of each width over the shipped one, the best width per scene
(chosen with the target: an oracle), the misfit's pick and the misfit ratio at 1.6 to 1.2 HR px.
Besides the engine's sets, `mid-blur` and `wide-blur`: the in-distribution conditions with blur
1.8-2.4 / 2.6-3.0 HR px, noise 0.2-0.5% of the level, no clouds and no change; and `sensor-S`
for each S of `--sensor-sigmas`: the in-distribution conditions (noise, clouds, change) with every
frame blurred by one isotropic Gaussian of S HR px and no halo, as one sensor's frames are (what
a user who states the sensor's MTF, ``--sensor-mtf``, has).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/psf_width_study.py --sets wide-blur in-distribution --scenes 12
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import replace
from unittest import mock

import numpy as np
import torch
from detail_gate_study import SETS, CachedRunner
from misr_engine.datasets.simulate import Degradation
from misr_engine.evaluation import adaptation
from misr_engine.evaluation import baselines as B
from misr_engine.evaluation.adaptation import (
    evidence_scenes,
    paired_interval,
    scene_score,
)
from misr_engine.inference import consistency
from misr_engine.inference.backends import TorchRunner
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack

WIDTHS = (0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.4, 2.8)
"""HR px: the Gaussian PSF widths tried."""
WIDE_BLUR = Degradation(psf_sigma=(2.6, 3.0), halo_probability=0.0, noise_fraction=(0.002, 0.005),
                        cloud_probability=0.0, full_cloud_probability=0.0, change_probability=0.0, max_shift_lr=1.0)
BLURRED = {"wide-blur": WIDE_BLUR, "mid-blur": replace(WIDE_BLUR, psf_sigma=(1.8, 2.4))}


def misfit(sr: np.ndarray, prepared: B.Prepared, width: float) -> float:
    """Mean squared residual of the clear prepared frames against `sr` blurred by `width`, observed
    at each frame's phase, every frame's mean residual removed."""
    blurred = B.gaussian_blur(sr.astype(np.float64), width)
    residuals = [(frame - B.forward_model(blurred, dy, dx, psf_sigma=0.0))[mask]
                 for frame, mask, (dy, dx) in zip(prepared.frames, prepared.masks, prepared.phases)]
    residuals = [r - r.mean() for r in residuals if r.size]
    return float(np.mean(np.concatenate(residuals) ** 2)) if residuals else 0.0


def strongest_classical(frames: np.ndarray, masks: np.ndarray, hr: np.ndarray, sensor_sigma: float | None) -> float:
    """cPSNR of the best registered pipeline on the scene (``baselines.STRONGEST_CANDIDATES``), with
    IBP also run with the sensor's PSF when it is known."""
    results = [scene_score(B.BASELINES[name](frames, masks), hr) for name in B.STRONGEST_CANDIDATES]
    if sensor_sigma is not None:
        results.append(scene_score(B.ibp(frames, masks, psf_sigma=sensor_sigma), hr))
    return max(results)


def print_margins(scores: list[dict[str, float]], methods: Iterable[str], baseline: str) -> None:
    """Per method, its mean margin over `baseline` across the scenes' `scores` with the 95% paired
    bootstrap interval, the worst scene and the scenes ahead."""
    for method in methods:
        margins = [r[method] - r[baseline] for r in scores]
        mean, low, high = paired_interval([r[method] for r in scores], [r[baseline] for r in scores])
        print(f"   {method}: {mean:+.3f} [{low:+.3f}, {high:+.3f}], worst {min(margins):+.3f}, "
              f"{sum(m > 0 for m in margins)}/{len(margins)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["in-distribution", "coarse-bands", "mid-blur", "wide-blur"],
                        help="sets of detail_gate_study.SETS, mid-blur, wide-blur, sensor-S")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--sensor-sigmas", type=float, nargs="*", default=[],
                        help="HR px: add a set `sensor-S` per value (one isotropic Gaussian for every frame)")
    parser.add_argument("--sensor-base", choices=["in-distribution", "unseen-bands"],
                        help="the `sensor-S` sets keep this evidence set's bands and conditions (only the PSF "
                             "fixed) and are named BASE-sensor-S (default: the in-distribution bands under the "
                             "training ranges, `Degradation()`)")
    parser.add_argument("--split", choices=["validation", "test"], default="validation",
                        help="test: for reporting a shipped option, never for choosing")
    parser.add_argument("--widths", type=float, nargs="+", default=list(WIDTHS))
    parser.add_argument("--model", default="piunet", help="the network whose SR is made consistent")
    parser.add_argument("--lr-side", type=int, default=64, help="LR pixels: the side of the added sets' scenes")
    parser.add_argument("--classical", action="store_true",
                        help="also the margin of each width over the strongest classical pipeline")
    args = parser.parse_args()
    widths = tuple(sorted(set(args.widths) | {consistency.PSF_SIGMA}))
    bases = {name: "in-distribution" for name in BLURRED}
    sensors: dict[str, float] = {}
    for sigma in args.sensor_sigmas:
        base = args.sensor_base or "in-distribution"
        conditions = adaptation.EVIDENCE_SETS[base].conditions if args.sensor_base else Degradation()
        name = f"{args.sensor_base}-sensor-{sigma:g}" if args.sensor_base else f"sensor-{sigma:g}"
        BLURRED[name], bases[name] = replace(conditions, psf_sigma=(sigma, sigma), halo_probability=0.0), base
        sensors[name] = sigma
    unknown = [s for s in args.sets if s not in SETS and s not in BLURRED]
    if unknown:
        parser.error(f"unknown sets: {unknown}")
    for name, conditions in BLURRED.items():
        adaptation.EVIDENCE_SETS[name] = replace(adaptation.EVIDENCE_SETS[bases[name]], conditions=conditions)
        SETS[name] = (name, 9, args.lr_side)
    runner = CachedRunner(TorchRunner(load_model(args.model).model, torch.device("cpu")))
    shipped = str(consistency.PSF_SIGMA)
    for set_name in args.sets:
        evidence, frames_per_stack, lr_side = SETS[set_name]
        scenes = evidence_scenes(evidence, args.split, args.scenes, lr_side, n_frames=frames_per_stack)
        scores, picks, ratios = [], [], []
        for frames, masks, hr in zip(scenes["frames"], scenes["masks"], scenes["hr"]):
            runner.cache.clear()
            stack = Stack.in_memory(frames, masks)
            with mock.patch.object(consistency, "CONSISTENCY_STEPS", 0):
                gated = super_resolve(stack, runner)[0]
            start = np.where(np.isfinite(gated), gated, np.nanmean(gated))
            fits = {str(w): misfit(start, B.engine_prepared(frames, masks), w) for w in widths}
            picks.append(min(fits, key=fits.get))
            ratios.append(fits.get("1.6", np.nan) / fits.get("1.2", np.nan))
            row = {str(width): scene_score(super_resolve(stack, runner, psf_sigma=width)[0], hr) for width in widths}
            if args.classical:
                row["classical"] = strongest_classical(frames, masks, hr, sensors.get(set_name))
            scores.append(row)
        print(f"{set_name} ({len(scores)} scenes): best width per scene {[max(widths, key=lambda w: r[str(w)]) for r in scores]}")
        print(f"   {shipped}: {np.mean([r[shipped] for r in scores]):.3f} dB; gain over it [95% paired bootstrap], "
              "worst scene, scenes gaining:")
        print_margins(scores, map(str, widths), shipped)
        print(f"   misfit's pick {picks}; misfit ratio 1.6 / 1.2 {np.round(ratios, 3).tolist()}", flush=True)
        if args.classical:
            print("   margin over the strongest classical (IBP told the sensor's PSF too, where known):")
            print_margins(scores, map(str, widths), "classical")


if __name__ == "__main__":
    main()
