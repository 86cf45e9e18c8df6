"""The change-away study (change_away_study.py, whose options it takes) with the per-scene PSF width
chosen in a variant way, to see which variant keeps a changed field from moving the width:

* ``steady-windows``: the width chosen from the windows with the pixels that changed in some frame
  (``registration.change.steady_masks``) counted as not clear (the network's inputs change too);
* ``k-outside-change``: the inputs as they are, the sharpening coefficient k summed only outside
  the pixels that changed in some frame (``registration.change.changed_pixels``, their union over
  the frames grown by 2 LR px);
* ``continuous``: k as the engine takes it, the width where k crosses its limit, interpolated
  linearly between the widths tried (``psf_width.choose_width`` takes the width tried beyond the
  crossing): a small change in k moves the width a little instead of by a whole step. Narrowing,
  the limit is ``narrowing_limit`` (SHARPENING_LIMIT at the engine's width); widening, a line
  from -WIDENING_TRIGGER at the engine's width to WIDENING_LIMIT at the first wider one, then
  WIDENING_LIMIT; so at either trigger the width is the engine's. The held-out misfit at a width
  between two tried is interpolated the same way;
* ``continuous-held``: as ``continuous``, the widening crossing held back by half a step (0.2 HR
  px, no narrower than the engine's width), as the engine's choice lies on average.

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

VARIANTS = ("steady-windows", "k-outside-change", "continuous", "continuous-held")
HELD_BACK = 0.2
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


def crossing(near: float, far: float, near_excess: float, far_excess: float) -> float:
    """Where the excess of k over its limit, linear between two widths tried, crosses 0."""
    return near + (far - near) * near_excess / (near_excess - far_excess)


def continuous_width(k_at: Callable[[float], float], held_back: float = 0.0) -> float:
    """``psf_width.choose_width`` with the width interpolated to where k crosses its limit."""
    engine_k = k_at(psf_width.PSF_SIGMA)
    if engine_k > psf_width.SHARPENING_LIMIT:
        near, near_excess, excess = psf_width.PSF_SIGMA, engine_k - psf_width.SHARPENING_LIMIT, {}
        for width in psf_width.NARROWER:
            excess[width] = k_at(width) - psf_width.narrowing_limit(width)
            if excess[width] <= 0:
                return crossing(near, width, near_excess, excess[width])
            near, near_excess = width, excess[width]
        return min(excess, key=excess.__getitem__)
    if engine_k > -psf_width.WIDENING_TRIGGER:
        return psf_width.PSF_SIGMA
    near, near_excess = psf_width.PSF_SIGMA, engine_k + psf_width.WIDENING_TRIGGER
    for width in psf_width.WIDER:
        far_excess = k_at(width) - psf_width.WIDENING_LIMIT
        if far_excess > 0:
            return max(psf_width.PSF_SIGMA, crossing(near, width, near_excess, far_excess) - held_back)
        near, near_excess = width, far_excess
    return max(psf_width.PSF_SIGMA, near - held_back)


def interpolated_narrowed_further(chosen: float, misfit: Mapping[float, float], ratio: float) -> float:
    """``psf_width.narrowed_further`` with the misfit at `chosen` interpolated between the widths tried."""
    widths = sorted(misfit)
    at_chosen = float(np.interp(chosen, widths, [misfit[width] for width in widths]))
    least = min(widths, key=misfit.__getitem__)
    return least if least < chosen and misfit[least] < (1.0 - ratio) * at_chosen else chosen


def printed_choice(*args, **kwargs) -> tuple[float, dict[float, float]]:
    return printed(*engine_choice(*args, **kwargs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--scene-scores", action="store_true", help="run scene_scores.py, not the change study")
    args, rest = parser.parse_known_args()
    sys.argv[1:] = rest  # the study's own options
    if args.variant == "steady-windows":
        tiled.scene_psf_sigma = steady_windows_choice
    elif args.variant.startswith("continuous"):
        tiled.scene_psf_sigma = printed_choice
        held_back = HELD_BACK if args.variant.endswith("held") else 0.0
        psf_width.choose_width = partial(continuous_width, held_back=held_back)
        psf_width.narrowed_further = interpolated_narrowed_further
    else:
        tiled.scene_psf_sigma = k_outside_change_choice
        psf_width.sharpening = sharpening_outside_change
    (scene_scores if args.scene_scores else change_away_study).main()


if __name__ == "__main__":
    main()
