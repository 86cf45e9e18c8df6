"""The change-away study (change_away_study.py, whose options it takes) with the per-scene PSF width
chosen in a variant way, to see which variant keeps a changed field from moving the width:

* ``steady-windows``: the width chosen from the windows with the pixels that changed in some frame
  (``registration.change.steady_masks``) counted as not clear (the network's inputs change too);
* ``k-outside-change``: the inputs as they are, the sharpening coefficient k summed only outside
  the pixels that changed in some frame (``registration.change.changed_pixels``, their union over
  the frames grown by 2 LR px).

Every scene's chosen width and k are printed (``WIDTH`` lines, before then after the change):

    cd scripts; OMP_NUM_THREADS=1 ../.venv/bin/python change_away_width_variants.py --variant k-outside-change \\
        --clips 1 --centre-trims 0.125 --scenes 24 --per-scene

docs/evaluation/change_away_psf_width_validation.log has both runs. Neither is what the engine does.
With ``--scene-scores``, the other options are scene_scores.py's: the variant's cPSNR on
validation scenes (docs/evaluation/k_outside_change_rule.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from functools import partial

import change_away_study
import numpy as np
import scene_scores
from misr_engine import SCALE
from misr_engine.inference import psf_width, tiled
from misr_engine.inference.held_out import held_out_misfits
from misr_engine.registration.change import changed_pixels, steady_masks
from scipy import ndimage

VARIANTS = ("steady-windows", "k-outside-change")
GROW_LR = 2
INNER = (slice(psf_width.MARGIN * SCALE, -psf_width.MARGIN * SCALE),) * 2
engine_choice, engine_sharpening = psf_width.scene_psf_sigma, psf_width.sharpening
outside: dict = {"masks": [], "calls": 0}  # per window, the HR pixels k leaves out; which window k asks next


def printed(chosen: float, found: dict[float, float]) -> tuple[float, dict[float, float]]:
    print("WIDTH", chosen, {width: round(k, 4) for width, k in found.items()}, flush=True)
    return chosen, found


def steady_windows_choice(run: psf_width.WindowRunner, windows: list[tuple[np.ndarray, np.ndarray]],
        phases: np.ndarray, noise: float, frame_noise: np.ndarray | None = None,
        misfits: Callable[[], Mapping[float, float]] | None = None) -> tuple[float, dict[float, float]]:
    steady = [(frames, steady_masks(frames, masks, phases)) for frames, masks in windows]
    return printed(*engine_choice(run, steady, phases, noise, frame_noise,
                                  partial(held_out_misfits, steady, phases, psf_width.WIDTHS)))


def k_outside_change_choice(run: psf_width.WindowRunner, windows: list[tuple[np.ndarray, np.ndarray]],
        phases: np.ndarray, noise: float, frame_noise: np.ndarray | None = None,
        misfits: Callable[[], Mapping[float, float]] | None = None) -> tuple[float, dict[float, float]]:
    outside["masks"], outside["calls"] = [], 0
    for frames, masks in windows:
        union = ndimage.binary_dilation(changed_pixels(frames, masks.astype(bool), phases).any(axis=0),
                                        iterations=GROW_LR)
        outside["masks"].append(np.kron(union, np.ones((SCALE, SCALE), bool))[INNER])
    return printed(*engine_choice(run, windows, phases, noise, frame_noise, misfits))


def sharpening_outside_change(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """k's sums without the changed pixels (the engine's k asks the windows in order, width by width)."""
    changed = outside["masks"][outside["calls"] % len(outside["masks"])]
    outside["calls"] += 1
    return engine_sharpening(np.where(changed, np.nan, before), after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--scene-scores", action="store_true", help="run scene_scores.py, not the change study")
    args, rest = parser.parse_known_args()
    sys.argv[1:] = rest  # the study's own options
    if args.variant == "steady-windows":
        tiled.scene_psf_sigma = steady_windows_choice
    else:
        tiled.scene_psf_sigma = k_outside_change_choice
        psf_width.sharpening = sharpening_outside_change
    (scene_scores if args.scene_scores else change_away_study).main()

if __name__ == "__main__":
    main()
