"""Should the scene spread have a floor relative to the level? (VALIDATION scenes)

The network works in scene units, (value - centre) / spread. Training noise is relative to the
level, so on a low-contrast scene (water, desert, haze) the same noise is many spreads large:
more than any training stack showed. A floor, spread >= k x |centre|, keeps the noise within the
training's units at the cost of fainter detail. For each candidate k the shipped network runs as
the engine runs it (``normalisation.MIN_RELATIVE_SPREAD`` set to k) on validation scenes:
misr evaluate's `validation` set and the validation-window evidence sets out of range, surface
change and low contrast; cPSNR on reflectance, the change against no floor with its 95% paired
bootstrap interval, and registration + mean beside it.

With ``--knob noise`` the candidates are floors from the scene's own noise instead
(``normalisation.MAX_NOISE_UNITS``: the spread is at least the noise / u, so that the network
never sees noise above u of its units); ``--knob both`` takes (level floor, noise bound) pairs;
``--knob clip`` compares clips of the registration's high-passed images instead
(``registration.shift.HIGHPASS_CLIP``, 0: none; docs/evaluation/registration_clip_validation.log);
``--knob change`` compares the registration's second pass without the pixels that changed
(``registration.change.CHANGE_SIGMAS``; 0: one pass; docs/evaluation/
registration_change_pass_validation.log); ``--knob units`` what the scene's units make of the
pixels that changed (0: kept, 1: left out, 2: imputed; ``inference.normalisation.CHANGED_PIXELS``;
docs/evaluation/units_without_change_validation.log); ``--offset DN`` adds a constant to every value of every scene, as products whose numbers carry
an offset do (Sentinel-2 L2A: +1000 DN since processing baseline 04.00).

The logs, reproduced with `--knob both` (LEVEL,NOISE pairs; a bound of 0 is none), since the
other knob keeps its engine default (the noise bound 0.12, the level floor 0):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/normalisation_floor_study.py --knob both \\
        --values 0,0 0.05,0 0.1,0 0.2,0 0.3,0 | tee docs/evaluation/normalisation_floor_validation.log
    OMP_NUM_THREADS=1 .venv/bin/python scripts/normalisation_floor_study.py --knob both \\
        --values 0.1,0 0.1,0.3 0.1,0.2 0.1,0.15 0.1,0.1 0.1,0.07 0.1,0.05 | tee docs/evaluation/noise_floor_validation.log
    OMP_NUM_THREADS=1 .venv/bin/python scripts/normalisation_floor_study.py --knob both \\
        --values 0.1,0.15 0,0.15 0,0.12 0,0.1 [--offset 1000] | tee docs/evaluation/floors[_offset1000]_validation.log
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from misr_engine.evaluation.adaptation import (
    evidence_scenes,
    paired_interval,
    scene_score,
)
from misr_engine.evaluation.baselines import registered_mean
from misr_engine.evaluation.sets import SETS
from misr_engine.inference import normalisation
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack
from misr_engine.registration import change, shift

FLOORS = (0.0, 0.05, 0.1, 0.2, 0.3)
NOISE_BOUNDS = (0.0, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05)
EVIDENCE = ("out-of-range", "surface-change", "low-contrast")


def with_floor(k: float) -> None:
    """Set the engine's floor: spread >= k x |centre| (0: the spread from the scene alone)."""
    normalisation.MIN_RELATIVE_SPREAD = k


def with_noise_bound(u: float) -> None:
    """Set the engine's noise floor: spread >= noise / u (0: none)."""
    normalisation.MAX_NOISE_UNITS = u or None


def with_registration_clip(clip: float) -> None:
    """Set the registration's clip of the high-passed images (0: none)."""
    shift.HIGHPASS_CLIP = clip or None


def with_change_pass(sigmas: float) -> None:
    """Set the registration's second pass without the pixels that changed (0: one pass)."""
    change.CHANGE_SIGMAS = sigmas or None


def with_changed_pixels(rule: float) -> None:
    """How the scene's units treat the pixels that changed in some frames:
    normalisation.CHANGED_PIXEL_RULES[rule] (0: kept, 1: left out, 2: imputed)."""
    normalisation.CHANGED_PIXELS = normalisation.CHANGED_PIXEL_RULES[int(rule)]


def with_both(floors: tuple[float, float]) -> None:
    """Set both: (level floor, noise bound)."""
    with_floor(floors[0])
    with_noise_bound(floors[1])


KNOBS = {"level": (FLOORS, with_floor, "floor {:4.2f} x level"),
         "noise": (NOISE_BOUNDS, with_noise_bound, "noise <= {:4.2f} units"),
         "clip": ((0.0, 1.0), with_registration_clip, "registration clip {:3.1f}"),
         "change": ((0.0, 6.0, 4.0), with_change_pass, "registration change pass at {:.0f} sigmas"),
         "units": ((0.0, 1.0, 2.0), with_changed_pixels, "changed pixels in the units: rule {:.0f}"),
         "both": (((0.1, 0.15), (0.0, 0.15), (0.0, 0.1)), with_both, "floor {0[0]:4.2f} x level, noise <= {0[1]:4.2f} units")}


def scene_sets(count: int, offset: float = 0.0) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The validation scenes per set, `offset` DN added to every value (a product whose digital
    numbers carry an offset, as Sentinel-2 L2A's +1000 since processing baseline 04.00)."""
    validation = SETS["validation"].scenes(count, workers=1)
    sets = {"validation (training ranges)": validation}
    for name in EVIDENCE:
        sets[name] = evidence_scenes(name, "validation", count)
    return {name: (np.where(s["masks"], s["frames"] + offset, 0.0), s["masks"], s["hr"] + offset)
            for name, s in sets.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--model", default="piunet")
    parser.add_argument("--knob", choices=KNOBS, default="level")
    parser.add_argument("--values", nargs="+", metavar="V",
                        help="only these candidates (the first is the one the others are compared with); "
                             "for --knob both LEVEL,NOISE pairs")
    parser.add_argument("--offset", type=float, default=0.0, help="DN added to every value of every scene")
    args = parser.parse_args()
    candidates, setting, label = KNOBS[args.knob]
    if args.values:
        candidates = tuple(tuple(float(v) for v in value.split(",")) if args.knob == "both" else float(value)
                           for value in args.values)
    loaded = load_model(args.model)
    print(f"{args.model} {loaded.sha256[:12]}, validation window, {args.scenes} scenes per set"
          + (f", {args.offset:g} DN added to every value" if args.offset else ""))
    for set_name, (frames, masks, hrs) in scene_sets(args.scenes, args.offset).items():
        scores: dict[object, list[float]] = {}
        for k in candidates:
            setting(k)
            scores[k] = [scene_score(super_resolve(Stack.in_memory(f, m), loaded.model, torch.device("cpu"))[0], hr)
                         for f, m, hr in zip(frames, masks, hrs)]
        setting(candidates[0])  # the baseline as the first candidate has it (the clip moves it too)
        classical = [scene_score(registered_mean(f, m), hr) for f, m, hr in zip(frames, masks, hrs)]
        print(f"\n{set_name}: {label.format(candidates[0]) if candidates[0] != 0 else 'without'} {np.mean(scores[candidates[0]]):.3f} dB, registration + mean {np.mean(classical):.3f} dB")
        for k in candidates[1:]:
            mean, low, high = paired_interval(scores[k], scores[candidates[0]])
            print(f"  {label.format(k)}: {np.mean(scores[k]):.3f} dB, {mean:+.3f} [{low:+.3f}, {high:+.3f}], "
                  f"better on {sum(a > b for a, b in zip(scores[k], scores[candidates[0]]))}/{len(hrs)}", flush=True)


if __name__ == "__main__":
    main()
