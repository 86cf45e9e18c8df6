"""Does ranking the frames by a median over blocks of sharpness (registration/reference.py)
change the SR's quality? On VALIDATION scenes (issue 14's change-away work).

Every scene of the chosen sets is super-resolved twice with the shipped weights: with the
reference chosen by the block median (what the engine does) and by the former frame-wide
mean of squared differences; prints how often the reference differs and the cPSNR change
(block median minus frame-wide) with its 95% paired bootstrap interval over scenes.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/reference_rule_validation.py --scenes 12
"""

from __future__ import annotations

import argparse
from unittest import mock

import numpy as np
import torch

from misr_engine.evaluation.adaptation import evidence_scenes, paired_interval, scene_score
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack
from misr_engine.registration import reference

CPU = torch.device("cpu")
FRAME_WIDE = 1 << 30  # a block larger than any frame: the frame-wide mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["in-distribution", "out-of-range"])
    parser.add_argument("--scenes", type=int, default=12)
    args = parser.parse_args()
    model = load_model("piunet").model
    block_sharpness = reference.sharpness
    for set_name in args.sets:
        scenes = evidence_scenes(set_name, "validation", args.scenes)
        new, old, differ = [], [], 0
        for frames, masks, hr in zip(scenes["frames"], scenes["masks"], scenes["hr"]):
            stack = Stack.in_memory(frames, masks)
            new.append(scene_score(super_resolve(stack, model, CPU)[0], hr))
            chosen = reference.clearest_frame(masks, frames)
            with mock.patch.object(reference, "sharpness", lambda f, m: block_sharpness(f, m, FRAME_WIDE)):
                differ += reference.clearest_frame(masks, frames) != chosen
                old.append(scene_score(super_resolve(stack, model, CPU)[0], hr))
        mean, low, high = paired_interval(new, old)
        print(f"{set_name}: {len(new)} scenes, reference differs on {differ}; block median {np.mean(new):.3f} dB, "
              f"frame-wide {np.mean(old):.3f} dB, change {mean:+.3f} [{low:+.3f}, {high:+.3f}]", flush=True)


if __name__ == "__main__":
    main()
