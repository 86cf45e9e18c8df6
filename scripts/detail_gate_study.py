"""Choosing the steps after the network on VALIDATION scenes: the detail gate
(``inference/detail_gate.py``) and the back-projection weighed by split-half agreement
(``inference/consistency.py``).

Every scene of the chosen sets is super-resolved by the engine with the shipped weights
(``--model``), once with neither step and once per setting (gate window, low, high, gain;
back-projection steps, agreement window): the network runs once per scene (its tile outputs
are cached), the steps after it are applied as in the engine. Prints, per set and setting, the
cPSNR change against neither step with its 95% paired bootstrap interval over scenes, and the
margin over the strongest classical pipeline (registration + mean, + Wiener, IBP; per scene)
with the worst scene.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/detail_gate_study.py --scenes 24
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
from unittest import mock

import numpy as np
import torch
from misr_engine.evaluation.adaptation import (
    evidence_scenes,
    paired_interval,
    scene_score,
)
from misr_engine.evaluation.baselines import BASELINES, STRONGEST_CANDIDATES
from misr_engine.inference import consistency, detail_gate
from misr_engine.inference.backends import TorchRunner
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack

SETS = {"in-distribution": ("in-distribution", 9, 64), "out-of-range": ("out-of-range", 4, 64),
        "out-of-range-9": ("out-of-range", 9, 64), "low-contrast": ("low-contrast", 9, 64),
        "surface-change": ("surface-change", 9, 64), "unseen-bands": ("unseen-bands", 9, 64),
        "unseen-bands-out-of-range": ("unseen-bands-out-of-range", 4, 64),
        "coarse-bands": ("coarse-bands", 9, 36), "coarse-bands-out-of-range": ("coarse-bands-out-of-range", 4, 36)}
"""Name -> (evidence set, frames per stack, LR side); out of range with 4 frames as in `misr
evaluate`, and with 9; the unseen bands exist on the test window only (``evaluation.adaptation``);
the coarse bands at 36 LR px, since the validation window is 140 pixels high at 20 m."""
CHOICE_SETS = ["in-distribution", "out-of-range", "out-of-range-9", "low-contrast", "surface-change"]


class CachedRunner:
    """A runner that remembers its outputs by input, so each setting reruns only the gate."""

    def __init__(self, runner: TorchRunner):
        self.runner, self.cache = runner, {}
        self.backend, self.provider, self.default_batch = runner.backend, runner.provider, runner.default_batch

    def __call__(self, frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> np.ndarray:
        key = hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in (frames, masks, phases))).hexdigest()
        if key not in self.cache:
            self.cache[key] = self.runner(frames, masks, phases)
        return self.cache[key].copy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=CHOICE_SETS, choices=list(SETS))
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--windows", type=int, nargs="+", default=[31])
    parser.add_argument("--ratios", nargs="+", default=["0.6,1.4", "0.8,1.8", "1.0,2.0", "1.2,2.4", "1.5,3.0"])
    parser.add_argument("--gains", type=float, nargs="+", default=[1.0],
                        help="weights of the network's detail where it fully counts (GATE_GAIN)")
    parser.add_argument("--consistency", nargs="+", default=["0,31"],
                        help="steps,agreement window of the back-projection after the gate (0: none)")
    parser.add_argument("--against-gate", action="store_true",
                        help="measure changes against the shipped gate alone instead of neither step")
    parser.add_argument("--model", default="piunet", help="the network whose SR is gated (shipped weights)")
    parser.add_argument("--split", choices=["validation", "test"], default="validation",
                        help="test: to report a setting already chosen on validation, never to choose one")
    args = parser.parse_args()
    settings = [(w, tuple(float(v) for v in r.split(",")), g, tuple(int(v) for v in c.split(",")))
                for w, r, g, c in itertools.product(args.windows, args.ratios, args.gains, args.consistency)]
    runner = CachedRunner(TorchRunner(load_model(args.model).model, torch.device("cpu")))
    for set_name in args.sets:
        evidence, frames_per_stack, lr_side = SETS[set_name]
        scenes = evidence_scenes(evidence, args.split, args.scenes, lr_side, n_frames=frames_per_stack)
        plain, classical, gated = [], [], {s: [] for s in settings}
        for frames, masks, hr in zip(scenes["frames"], scenes["masks"], scenes["hr"]):
            runner.cache.clear()
            stack = Stack.in_memory(frames, masks)
            classical.append(max(scene_score(BASELINES[name](frames, masks), hr) for name in STRONGEST_CANDIDATES))
            with mock.patch.object(detail_gate, "GATE_RATIOS", detail_gate.GATE_RATIOS if args.against_gate else None), \
                    mock.patch.object(consistency, "CONSISTENCY_STEPS", 0):
                plain.append(scene_score(super_resolve(stack, runner)[0], hr))
            for window, ratios, gain, (steps, agreement) in settings:
                with mock.patch.object(detail_gate, "GATE_RATIOS", ratios), \
                        mock.patch.object(detail_gate, "GATE_WINDOW", window), \
                        mock.patch.object(detail_gate, "GATE_GAIN", gain), \
                        mock.patch.object(consistency, "CONSISTENCY_STEPS", steps), \
                        mock.patch.object(consistency, "AGREEMENT_WINDOW", agreement):
                    gated[(window, ratios, gain, (steps, agreement))].append(scene_score(super_resolve(stack, runner)[0], hr))
        margin = np.subtract(plain, classical)
        print(f"{set_name}: {len(plain)} scenes; {'the gate alone' if args.against_gate else 'neither step'} {np.mean(plain):.3f} dB, margin over the strongest "
              f"classical {margin.mean():+.3f}, worst {margin.min():+.2f}", flush=True)
        for setting, scores in gated.items():
            mean, low, high = paired_interval(scores, plain)
            margin = np.subtract(scores, classical)
            print(f"  window {setting[0]:2d} ratios {setting[1][0]:.1f}-{setting[1][1]:.1f} gain {setting[2]:.2f} back-projection {setting[3]}: change {mean:+.3f} "
                  f"[{low:+.3f}, {high:+.3f}]; margin {margin.mean():+.3f}, worst {margin.min():+.2f}", flush=True)


if __name__ == "__main__":
    main()
