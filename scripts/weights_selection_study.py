#!/usr/bin/env python3
"""Would the held-out-frame (leave-one-out) loss pick the better weights per scene, without HR?

Validation scenes only (12 per set, as scripts/adaptation_evidence.py --split validation draws
them): per scene and weights, the cPSNR of the SR and the lowest mean held-out-frame L1 over
Gaussian kernels of 0.6-3.2 HR px. One JSON line per scene to the file given:

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python scripts/weights_selection_study.py OUT.jsonl [SET ...]
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from misr_engine.evaluation.adaptation import evidence_scenes, scene_score
from misr_engine.inference.finetune import as_batch, held_out_order, leave_one_out_loss
from misr_engine.inference.tiled import finetuning_inputs, super_resolve
from misr_engine.models.backprojection import PSF_SIGMA, gaussian_kernel
from misr_engine.models.kernel_prior import KernelPriorConfig
from misr_engine.models.registry import model_spec
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack

CPU = torch.device("cpu")
SIGMAS = [0.6, 0.9, 1.2, 1.6, 2.0, 2.6, 3.2]  # HR px: the Gaussian kernels the held-out frames are scored with
SETS = ("in-distribution", "out-of-range")


def held_out_loss(model: torch.nn.Module, stack: Stack) -> dict[float, float]:
    """Mean held-out-frame L1 of `model` on the first fine-tuning window, per kernel width."""
    windows, phases = finetuning_inputs(stack)
    x, m, p = as_batch(*windows[0], phases, CPU)
    kernels = {s: torch.from_numpy(gaussian_kernel(KernelPriorConfig().kernel_size, s).astype(np.float32))[None, None] for s in SIGMAS}
    with torch.no_grad():
        return {s: float(np.mean([leave_one_out_loss(model, x, m, p, k, kernels[s]).item()
                                  for k in held_out_order(windows[0][1])])) for s in SIGMAS}


def main(output: str, sets: tuple[str, ...] = SETS) -> None:
    torch.set_num_threads(1)
    options = {option.name: option.path for option in model_spec("piunet").weights_options}
    models = {"sup": load_model("piunet", options["supervised"]).model,
              "ssl": load_model("piunet", options["self-supervised"]).model}
    with open(output, "w") as out:
        for set_name in sets:
            scenes = evidence_scenes(set_name, "validation", 12)
            for i in range(len(scenes["frames"])):
                stack = Stack.in_memory(scenes["frames"][i], scenes["masks"][i])
                row = {"set": set_name, "scene": i}
                for name, model in models.items():
                    row[f"cpsnr_{name}"] = scene_score(super_resolve(stack, model, CPU)[0], scenes["hr"][i])
                    losses = held_out_loss(model, stack)
                    row[f"loo_{name}"] = min(losses.values())
                    row[f"sigma_{name}"] = min(losses, key=losses.get)
                    row[f"loo12_{name}"] = losses[PSF_SIGMA]  # the kernel fine-tuning starts from
                print(json.dumps(row), flush=True)
                out.write(json.dumps(row) + "\n")
                out.flush()


if __name__ == "__main__":
    main(sys.argv[1], tuple(sys.argv[2:]) or SETS)
