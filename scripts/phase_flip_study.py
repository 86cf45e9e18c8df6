"""How much does the SR move when one frame's shift crosses a half pixel? (VALIDATION scenes)

The engine moves every frame by the whole-pixel part of its shift and gives the network the
sub-pixel rest (``registration.stack.subpixel_phase``, in [-0.5, 0.5]). A frame half a pixel off
can therefore arrive in two ways that show the same thing: moved by m with phase +0.5, or by
m + 1 with phase -0.5. A change elsewhere in the scene that moves such a frame's estimate by a
few thousandths of a pixel switches it from one to the other. Per scene, the frame and axis whose
phase is nearest +-0.5 is put 0.004 px inside and 0.004 px across the half pixel (everything else
as registered), and the mean |difference| of the two SRs is printed in % of the level, for the
full pipeline and without the back-projection step (``inference.consistency``) and/or the detail
gate (``inference.detail_gate``).

    OMP_NUM_THREADS=2 .venv/bin/python scripts/phase_flip_study.py --scenes 0 3 8 19 \\
        | tee -a docs/evaluation/change_away_attribution_validation.log
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from unittest import mock

import numpy as np
import torch
from change_away_study import BANDS, FRAMES, LR_SIDE
from misr_engine.datasets.samples import build_samples
from misr_engine.datasets.sentinel2 import VALIDATION_WINDOW, sentinel2_band_paths
from misr_engine.datasets.simulate import Degradation
from misr_engine.inference import consistency, detail_gate, tiled
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack
from misr_engine.registration.streamed import stack_registration

STEP = 0.004
"""LR px: how far inside and across the half pixel the frame is put."""
PIPELINES = {"full": (consistency.CONSISTENCY_STEPS, detail_gate.GATE_RATIOS),
             "no back-projection step": (0, detail_gate.GATE_RATIOS),
             "no detail gate": (consistency.CONSISTENCY_STEPS, None),
             "network only": (0, None)}
"""Back-projection steps and detail-gate ratios of the pipelines compared."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, nargs="+", default=[0, 3, 8, 19],
                        help="indices of change_away_study.py's 24 validation scenes")
    parser.add_argument("--pipelines", nargs="+", choices=list(PIPELINES), default=list(PIPELINES))
    args = parser.parse_args()
    scenes = build_samples(sentinel2_band_paths(BANDS), VALIDATION_WINDOW, max(args.scenes) + 1, LR_SIDE, FRAMES,
                           seed=7, conditions=replace(Degradation(), change_probability=0.0), workers=1,
                           featureless_keep=0.0, registered=False)
    model = load_model("piunet").model
    pipelines = {name: PIPELINES[name] for name in args.pipelines}
    moved_shares: dict[str, list[float]] = {name: [] for name in pipelines}
    for index in args.scenes:
        stack = Stack.in_memory(scenes["frames"][index], scenes["masks"][index])
        shifts, reference = stack_registration(stack)
        phases = shifts - np.round(shifts)
        frame, axis = np.unravel_index(np.argmax(np.abs(phases)), phases.shape)
        edge = 0.5 * np.sign(phases[frame, axis])
        placed = {}
        for name, offset in (("inside", -STEP), ("across", STEP)):
            placed[name] = shifts.copy()
            placed[name][frame, axis] = np.round(shifts[frame, axis]) + edge * (1 + 2 * offset)
        for label, (steps, ratios) in pipelines.items():
            srs = {}
            with mock.patch.object(consistency, "CONSISTENCY_STEPS", steps), \
                    mock.patch.object(detail_gate, "GATE_RATIOS", ratios):
                for name, moved in placed.items():
                    with mock.patch.object(tiled, "stack_registration", lambda _, moved=moved, reference=reference: (moved, reference)):
                        srs[name] = super_resolve(stack, model, torch.device("cpu"))[0]
            moved_share = 100 * np.mean(np.abs(srs["across"] - srs["inside"])) / np.mean(srs["inside"])
            moved_shares[label].append(moved_share)
            print(f"scene {index:2d}, frame {frame} axis {'yx'[axis]} phase {phases[frame, axis]:+.3f}, "
                  f"{label}: {moved_share:.3f}% of the level", flush=True)
    for label, shares in moved_shares.items():
        print(f"{label}: mean {np.mean(shares):.3f}% of the level over {len(shares)} scenes")


if __name__ == "__main__":
    main()
