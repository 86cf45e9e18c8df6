"""Whether the kernels test-time fine-tuning estimates tell the back-projection's PSF, on VALIDATION scenes.

Sets `sensor-S` (the in-distribution bands under the training ranges, every frame blurred by one
isotropic Gaussian of S HR px, no halo: one sensor's frames) and the engine's in-distribution
set. Per scene: the fine-tuning at its defaults (``finetune.finetune_on_scene``), the width of
its estimated kernels (median over the frames it left out of sqrt(sigma_major x sigma_minor),
HR px), and the SR scored: plain, plain with the back-projection through that width, fine-tuned,
fine-tuned with that width, and (for the sensor sets) plain with the sensor's true width.

    OMP_NUM_THREADS=1 PYTHONPATH=engine:scripts .venv/bin/python scripts/ttf_kernel_width_study.py --scenes 8
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import replace
from unittest import mock

import numpy as np
import torch
from detail_gate_study import CachedRunner
from misr_engine.datasets.simulate import Degradation
from misr_engine.evaluation import adaptation
from misr_engine.evaluation.adaptation import (
    evidence_scenes,
    paired_interval,
    scene_score,
)
from misr_engine.inference.backends import TorchRunner
from misr_engine.inference.finetune import (
    DEFAULT_STEPS,
    FineTuned,
    FineTuneSettings,
    finetune_on_scene,
    kernel_shape,
)
from misr_engine.inference.tiled import finetuning_inputs, super_resolve
from misr_engine.models import kernel_prior
from misr_engine.models.kernel_prior import load_kernel_prior
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack

CPU = torch.device("cpu")


def estimated_width(kernels: np.ndarray, held_out: list[int]) -> float:
    """HR px: the median over the left-out frames of their kernel's geometric-mean sigma."""
    shapes = [kernel_shape(kernels[index, 0]) for index in held_out]
    return float(np.median([np.sqrt(s["sigma_major"] * s["sigma_minor"]) for s in shapes]))


def fine_tuned_scenes(set_name: str, args: argparse.Namespace, model: torch.nn.Module, prior,
                      seed_sigma: float | None = None) -> Iterator[tuple[Stack, np.ndarray, FineTuned]]:
    """Per validation scene of `set_name`: its stack, its HR and the fine-tuning at its defaults,
    every frame's kernel started at the Gaussian of `seed_sigma` HR px (None: the prior's default)."""
    scenes = evidence_scenes(set_name, "validation", args.scenes, args.lr_size)
    for frames, masks, hr in zip(scenes["frames"], scenes["masks"], scenes["hr"]):
        stack = Stack.in_memory(frames, masks)
        windows, phases = finetuning_inputs(stack)
        start = kernel_prior.PSF_SIGMA if seed_sigma is None else seed_sigma
        with mock.patch.object(kernel_prior, "PSF_SIGMA", start):
            yield stack, hr, finetune_on_scene(model, windows, phases, FineTuneSettings(args.steps), CPU, prior)


def seeded(set_name: str, true_sigma: float | None, args: argparse.Namespace, model: torch.nn.Module,
           prior) -> None:
    """The fine-tuning started from every frame's kernel at the sensor's true width (the prior's
    latent of that Gaussian), scored with the back-projection through that width, against the
    plain engine told the same width."""
    if true_sigma is None:
        return
    rows = []
    for stack, hr, result in fine_tuned_scenes(set_name, args, model, prior, true_sigma):
        plain, tuned = (CachedRunner(TorchRunner(m, CPU)) for m in (model, result.model))
        rows.append({"width": estimated_width(result.kernels, result.held_out),
                     "plain+true": scene_score(super_resolve(stack, plain, psf_sigma=true_sigma)[0], hr),
                     "seeded ttf+true": scene_score(super_resolve(stack, tuned, psf_sigma=true_sigma)[0], hr)})
        print(set_name, {k: round(v, 3) for k, v in rows[-1].items()}, flush=True)
    mean, low, high = paired_interval([r["seeded ttf+true"] for r in rows], [r["plain+true"] for r in rows])
    gains = [r["seeded ttf+true"] - r["plain+true"] for r in rows]
    print(f"{set_name} ({len(rows)} scenes; kernels seeded at {true_sigma}, ended at median "
          f"{np.median([r['width'] for r in rows]):.2f}): seeded fine-tuning vs plain, both told the width: "
          f"{mean:+.3f} [{low:+.3f}, {high:+.3f}], worst {min(gains):+.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensor-sigmas", type=float, nargs="*", default=[0.9, 1.6, 2.0])
    parser.add_argument("--in-distribution", action="store_true", help="also the engine's in-distribution set")
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--lr-size", type=int, default=48)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--seeded", action="store_true",
                        help="instead: fine-tune from kernels seeded at the sensor's true width and score it with "
                             "the back-projection through that width, against the plain engine told the same width")
    args = parser.parse_args()
    sets = {f"sensor-{s:g}": s for s in args.sensor_sigmas}
    for name, sigma in sets.items():
        adaptation.EVIDENCE_SETS[name] = replace(
            adaptation.EVIDENCE_SETS["in-distribution"],
            conditions=replace(Degradation(), psf_sigma=(sigma, sigma), halo_probability=0.0))
    if args.in_distribution:
        sets["in-distribution"] = None
    loaded, prior = load_model("piunet"), load_kernel_prior()
    if args.seeded:
        for set_name, true_sigma in sets.items():
            seeded(set_name, true_sigma, args, loaded.model, prior)
        return
    for set_name, true_sigma in sets.items():
        rows = []
        for stack, hr, result in fine_tuned_scenes(set_name, args, loaded.model, prior):
            width = estimated_width(result.kernels, result.held_out)
            plain, tuned = (CachedRunner(TorchRunner(model, CPU)) for model in (loaded.model, result.model))
            row = {"width": width, "plain": scene_score(super_resolve(stack, plain)[0], hr),
                   "plain+width": scene_score(super_resolve(stack, plain, psf_sigma=width)[0], hr),
                   "ttf": scene_score(super_resolve(stack, tuned)[0], hr),
                   "ttf+width": scene_score(super_resolve(stack, tuned, psf_sigma=width)[0], hr)}
            if true_sigma is not None:
                row["plain+true"] = scene_score(super_resolve(stack, plain, psf_sigma=true_sigma)[0], hr)
            rows.append(row)
            print(set_name, {k: round(v, 3) for k, v in row.items()}, flush=True)
        widths = [r["width"] for r in rows]
        print(f"{set_name} ({len(rows)} scenes; true width {true_sigma}): estimated width median "
              f"{np.median(widths):.2f} HR px (range {min(widths):.2f}-{max(widths):.2f}); plain {np.mean([r['plain'] for r in rows]):.3f} dB")
        for method in [m for m in rows[0] if m not in ("width", "plain")]:
            mean, low, high = paired_interval([r[method] for r in rows], [r["plain"] for r in rows])
            gains = [r[method] - r["plain"] for r in rows]
            print(f"   {method} vs plain: {mean:+.3f} [{low:+.3f}, {high:+.3f}], worst {min(gains):+.3f}", flush=True)


if __name__ == "__main__":
    main()
