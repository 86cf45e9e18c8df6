#!/usr/bin/env python3
"""Would the held-out-frame (leave-one-out) loss pick the better weights per scene, without HR?

Validation scenes only (12 per set, as scripts/adaptation_evidence.py --split validation draws
them): per scene and weights, the cPSNR of the SR and the lowest mean held-out-frame L1 over
Gaussian kernels of 0.6-3.2 HR px. One JSON line per scene to the file given:

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python scripts/weights_selection_study.py OUT.jsonl
"""
import numpy as np, torch, json, sys
from misr_engine.evaluation.adaptation import evidence_scenes, scene_score
from misr_engine.inference.tiled import super_resolve, finetuning_inputs
from misr_engine.inference.finetune import leave_one_out_loss, as_batch, held_out_order
from misr_engine.models.weights import load_model
from misr_engine.models.backprojection import gaussian_kernel
from misr_engine.rasters.stack import Stack
torch.set_num_threads(1)
CPU = torch.device("cpu")
models = {"sup": load_model("piunet").model, "ssl": load_model("piunet", "engine/misr_engine/data/weights/piunet_ssl.safetensors").model}
sigmas = [0.6, 0.9, 1.2, 1.6, 2.0, 2.6, 3.2]
kernels = {s: torch.from_numpy(gaussian_kernel(15, s).astype(np.float32))[None, None] for s in sigmas}
out = open(sys.argv[1], "w")
for set_name in ("in-distribution", "out-of-range"):
    scenes = evidence_scenes(set_name, "validation", 12)
    for i in range(len(scenes["frames"])):
        frames, masks, hr = scenes["frames"][i], scenes["masks"][i], scenes["hr"][i]
        stack = Stack.in_memory(frames, masks)
        windows, phases = finetuning_inputs(stack)
        row = {"set": set_name, "scene": i}
        for name, model in models.items():
            row[f"cpsnr_{name}"] = scene_score(super_resolve(stack, model, CPU)[0], hr)
            x, m, p = as_batch(*windows[0], phases, CPU)
            order = held_out_order(windows[0][1])
            with torch.no_grad():
                losses = {s: float(np.mean([leave_one_out_loss(model, x, m, p, k, kernels[s]).item() for k in order])) for s in sigmas}
            row[f"loo_{name}"] = min(losses.values())
            row[f"sigma_{name}"] = min(losses, key=losses.get)
            row[f"loo12_{name}"] = losses[1.2]
        print(json.dumps(row), flush=True); out.write(json.dumps(row) + "\n"); out.flush()
