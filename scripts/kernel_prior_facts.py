"""Figures of the kernel prior's card that validation.json does not hold: validity of generated
kernels, the cost of kernel(z) and its gradient, and projection error against Adam steps.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/kernel_prior_facts.py [WEIGHTS]
"""

from __future__ import annotations

import json
import sys
import time

import torch

from misr_engine.training.kernel_prior import KernelPriorTrainConfig, validation_sets
from misr_engine.models.kernel_prior import centroid, fit_latent, load_kernel_prior


def validity(prior, scale: float, count: int = 4096) -> dict[str, float]:
    """Worst sum and centring errors, and smallest value, of kernels from latents scale * N(0, I)."""
    z = scale * torch.randn(count, prior.latent_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        kernels = prior.kernel(z)
    return {"sum_error_max": (kernels.sum((1, 2, 3)) - 1).abs().max().item(),
            "centroid_error_max_px": centroid(kernels.double()).abs().max().item(),
            "min_value": kernels.min().item()}


def kernel_cost(prior, frames: int = 9, repeats: int = 50) -> float:
    """Milliseconds of kernel(z) and its backward for one latent per frame."""
    z = prior.default_latent().repeat(frames, 1).requires_grad_(True)
    started = time.perf_counter()
    for _ in range(repeats):
        prior.kernel(z).square().sum().backward()
    return 1000 * (time.perf_counter() - started) / repeats


def projection_curve(prior, kernels: torch.Tensor) -> dict[int, float]:
    """Mean relative L2 error of fit_latent against its number of Adam steps."""
    curve = {}
    for steps in (50, 100, 300, 1000):
        with torch.no_grad():
            fitted = prior.kernel(fit_latent(prior, kernels, steps=steps))
        error = (fitted - kernels).flatten(1).norm(dim=1) / kernels.flatten(1).norm(dim=1)
        curve[steps] = round(error.mean().item(), 5)
    return curve


def main() -> None:
    torch.set_num_threads(1)
    prior = load_kernel_prior(sys.argv[1] if len(sys.argv) > 1 else None)
    held_out = validation_sets(KernelPriorTrainConfig(out_dir=""))
    facts = {"validity_z_N(0,I)": validity(prior, 1.0), "validity_z_3N(0,I)": validity(prior, 3.0),
             "kernel_and_gradient_ms_9_frames": round(kernel_cost(prior), 2),
             "projection_rel_l2_mean_by_steps": {name: projection_curve(prior, held_out[name][:32])
                                                 for name in ("simulator_gaussian", "gaussian", "motion")}}
    print(json.dumps(facts, indent=2))


if __name__ == "__main__":
    main()
