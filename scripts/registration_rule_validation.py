"""Do registration rules change the SR's quality? The engine's rules against the former ones,
on VALIDATION scenes (issue 14's registration work).

Rules (`--rules`, one or more, reverted together):
* ``reference``: the reference frame ranked by a median over blocks of sharpness
  (registration/reference.py) against the former frame-wide mean of squared differences;
* ``smoothing``: both images smoothed by ``shift.NOISE_SIGMA`` before registering them, against
  no smoothing;
* ``overlap``: the whole-pixel search kept to ``shift.MIN_OVERLAP`` of overlapping clear pixels,
  against scikit-image's default 0.3;
* ``clip``: the high-passed images clipped at ``shift.HIGHPASS_CLIP`` robust standard deviations,
  against no clip (docs/evaluation/registration_clip_rule_validation.log);
* ``change``: the second pass without the pixels that changed (``change.CHANGE_SIGMAS``), against
  one pass (chosen with scripts/normalisation_floor_study.py --knob change; the test window
  reported once: docs/evaluation/registration_change_pass_test.log);
* ``units``: the scene's units with the pixels that changed imputed
  (``inference.normalisation.CHANGED_PIXELS``), against those pixels kept as they are (chosen
  with scripts/normalisation_floor_study.py --knob units; the test window reported once:
  docs/evaluation/units_without_change_test.log).

Every scene of the chosen sets is super-resolved twice with the shipped weights; prints, per
set, the cPSNR change (engine minus former rules) with its 95% paired bootstrap interval over
scenes, and how many scenes it changed by more than 0.01 dB.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/registration_rule_validation.py --rules smoothing overlap --scenes 12
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Callable, ContextManager
from unittest import mock

import numpy as np
import torch

from misr_engine.evaluation.adaptation import evidence_scenes, paired_interval, scene_score
from misr_engine.inference import normalisation
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack
from misr_engine.registration import change, reference, shift

CPU = torch.device("cpu")
FRAME_WIDE = 1 << 30  # a block larger than any frame: the frame-wide mean
BLOCK_SHARPNESS = reference.sharpness

FORMER_RULES: dict[str, Callable[[], ContextManager]] = {
    "reference": lambda: mock.patch.object(reference, "sharpness", lambda f, m: BLOCK_SHARPNESS(f, m, FRAME_WIDE)),
    "smoothing": lambda: mock.patch.object(shift, "NOISE_SIGMA", 0.0),
    "overlap": lambda: mock.patch.object(shift, "MIN_OVERLAP", 0.3),
    "clip": lambda: mock.patch.object(shift, "HIGHPASS_CLIP", None),
    "change": lambda: mock.patch.object(change, "CHANGE_SIGMAS", None),
    "units": lambda: mock.patch.object(normalisation, "CHANGED_PIXELS", "kept"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", nargs="+", choices=sorted(FORMER_RULES), required=True)
    parser.add_argument("--sets", nargs="+", default=["in-distribution", "out-of-range", "surface-change"])
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--split", choices=["validation", "test"], default="validation",
                        help="test: to report a rule already chosen on validation, never to choose one")
    parser.add_argument("--lr-size", type=int, default=64)
    args = parser.parse_args()
    model = load_model("piunet").model
    for set_name in args.sets:
        scenes = evidence_scenes(set_name, args.split, args.scenes, args.lr_size)
        engine, former = [], []
        for frames, masks, hr in zip(scenes["frames"], scenes["masks"], scenes["hr"]):
            stack = Stack.in_memory(frames, masks)
            engine.append(scene_score(super_resolve(stack, model, CPU)[0], hr))
            with contextlib.ExitStack() as former_rules:
                for rule in args.rules:
                    former_rules.enter_context(FORMER_RULES[rule]())
                former.append(scene_score(super_resolve(stack, model, CPU)[0], hr))
        mean, low, high = paired_interval(engine, former)
        changed = int((np.abs(np.subtract(engine, former)) > 0.01).sum())
        print(f"{set_name}: {len(engine)} scenes, {changed} changed by more than 0.01 dB; engine {np.mean(engine):.3f} dB, "
              f"former rule {np.mean(former):.3f} dB, change {mean:+.3f} [{low:+.3f}, {high:+.3f}]", flush=True)


if __name__ == "__main__":
    main()
