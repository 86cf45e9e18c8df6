"""Where does the SR move away from a changed field? (issue 14, the change-away figure)

The scene of `tests/engine/inference/test_change_and_tiles.py`: the embedded sample's usable
frames, one 30 x 30 LR field raised by 1500 DN in 4 of them. The SR is computed before and after
the change, once with every scene-level estimate recomputed (what a run does), then with some
of them frozen at their value before the change: the registration (shifts and reference), the
radiometric fits, the normalisation. What moves away from the field (mean |after - before| more
than 20 LR pixels from it, in % of the scene's level) when an estimate is frozen is what that
estimate does not contribute.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/change_attribution.py [--frames 0 3 6] [--changed-pixels kept]

``--changed-pixels`` says what the scene's units make of the pixels that changed
(``normalisation.CHANGED_PIXELS``; 'kept', as the engine did before 2026-12-02); ``--only-all``
skips the frozen combinations.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from misr_engine import SCALE
from misr_engine.inference import normalisation, tiled
from misr_engine.inference.normalisation import Normalisation
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack, read_stack
from misr_engine.resources import sample_paths

CHANGE = 1500.0
FIELD = (slice(50, 80), slice(60, 90))
MARGIN = 20
CHANGED_FRAMES = (0, 2, 4, 6)


class Freezer:
    """Wraps a scene-level estimate: records the first value, returns it again when frozen
    (without computing a value it would discard)."""

    def __init__(self, compute: Callable[..., Any]):
        self.compute, self.first, self.frozen = compute, None, False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.frozen and self.first is not None:
            return self.first
        value = self.compute(*args, **kwargs)
        if self.first is None:
            self.first = value
        return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=CHANGED_FRAMES,
                        help="the usable frames the field is raised in")
    parser.add_argument("--changed-pixels", default=normalisation.CHANGED_PIXELS,
                        choices=normalisation.CHANGED_PIXEL_RULES,
                        help="what the scene's units make of the changed pixels (normalisation.CHANGED_PIXELS)")
    parser.add_argument("--only-all", action="store_true", help="only the run with every estimate recomputed")
    args = parser.parse_args()
    normalisation.CHANGED_PIXELS = args.changed_pixels
    stack = read_stack(*sample_paths())
    usable = stack.clear_fraction > 0
    before_stack = Stack.in_memory(stack.frames[usable], stack.masks[usable])
    changed = before_stack.frames.copy()
    changed[np.ix_(args.frames, np.arange(FIELD[0].start, FIELD[0].stop),
                   np.arange(FIELD[1].start, FIELD[1].stop))] += CHANGE
    after_stack = Stack.in_memory(changed, before_stack.masks)
    model = load_model("piunet").model
    estimates = {"registration": Freezer(tiled.stack_registration),
                 "radiometry": Freezer(tiled.scene_radiometry),
                 "normalisation": Freezer(Normalisation.of_blocks)}
    tiled.stack_registration = estimates["registration"]
    tiled.scene_radiometry = estimates["radiometry"]
    Normalisation.of_blocks = estimates["normalisation"]
    away = None
    print(f"field +{CHANGE:g} DN in usable frames {list(args.frames)}; changed pixels in the units: "
          f"{args.changed_pixels}", flush=True)
    for count in range(1 if args.only_all else len(estimates) + 1):
        for frozen in itertools.combinations(estimates, count):
            for name, freezer in estimates.items():
                freezer.first, freezer.frozen = None, name in frozen
            before = tiled.super_resolve(before_stack, model, torch.device("cpu"))[0]
            after = tiled.super_resolve(after_stack, model, torch.device("cpu"))[0]
            if away is None:
                away = np.ones(before.shape, bool)
                away[(FIELD[0].start - MARGIN) * SCALE:(FIELD[0].stop + MARGIN) * SCALE,
                     (FIELD[1].start - MARGIN) * SCALE:(FIELD[1].stop + MARGIN) * SCALE] = False
            level = float(np.nanmean(before))
            moved = float(np.nanmean(np.abs(after - before)[away]))
            print(f"frozen: {', '.join(frozen) or 'none':42s} moved {moved:5.2f} DN = {100 * moved / level:.3f}% "
                  f"of {level:.0f}", flush=True)


if __name__ == "__main__":
    main()
