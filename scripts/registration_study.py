"""How accurate is the registration, and which noise smoothing to use? On VALIDATION scenes.

For every scene of the chosen sets (validation window, unregistered frames with their simulated
misregistration), the engine's shifts (``registration.stack.window_registration``) are
compared with the true ones, for each smoothing width ``shift.NOISE_SIGMA`` listed (0: none).
Errors are per frame (the larger axis, LR px, after removing the scene's common offset: the
output grid's position is a convention), over frames with a clear pixel.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/registration_study.py --sigmas 0 0.5 0.7 1 1.5 2 --clips none

With ``--clips`` the candidates are clips of the high-passed images (``shift.HIGHPASS_CLIP``), on
the sets given (docs/evaluation/registration_clip_study.log):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/registration_study.py --clips none 6 4 3 2 \
        --sets in-distribution out-of-range surface-change strong-change

With ``--change-sigmas`` the candidates are the second pass without the pixels that changed
(``registration.change.CHANGE_SIGMAS``; 'none': one pass; docs/evaluation/
registration_change_pass_study.log):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/registration_study.py --change-sigmas none 8 6 4 \
        --scenes 24 --sets in-distribution out-of-range surface-change strong-change

With ``--far-margins`` the candidates are how much better a shift further than ``shift.NEAR_SHIFT``
from the products' geolocation must agree than the best near one (``shift.FAR_MARGIN``; 'none':
the best agreement wins); ``--far-shifts`` registers the set ``far-shifts`` (in-distribution bands
and degradations, every frame off by up to FAR_SHIFT LR px per axis: a geolocation error that the
rule must still find; docs/evaluation/far_shift_rule.md):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/registration_study.py --far-margins none 0.05 0.1 0.2 \
        --far-shifts --skip 168 --scenes 24 --sets in-distribution out-of-range surface-change \
        strong-change low-contrast far-shifts
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace

import numpy as np
from misr_engine.evaluation import adaptation
from misr_engine.evaluation.adaptation import evidence_scenes
from misr_engine.registration import change, shift
from misr_engine.registration.stack import window_registration

FAILED = 0.25  # LR px: an error above this is a failed registration
FAR_SHIFT = 6.0  # LR px per axis: the far-shifts set's geolocation errors (pairwise up to twice this)


def frame_errors(scenes: dict[str, np.ndarray]) -> np.ndarray:
    """Per-frame registration errors (LR px) over every scene's frames with a clear pixel."""
    errors = []
    for frames, masks, true in zip(scenes["frames"], scenes["masks"], scenes["true_shifts"]):
        error = window_registration(frames, masks)[0] - true
        error = np.abs(error - np.median(error, axis=0)).max(axis=1)
        errors.append(error[masks.any(axis=(1, 2))])
    return np.concatenate(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["in-distribution", "out-of-range"])
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--lr-size", type=int, default=64)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[shift.NOISE_SIGMA])
    parser.add_argument("--clips", nargs="+", default=[str(shift.HIGHPASS_CLIP).lower()],
                        help="candidate shift.HIGHPASS_CLIP values ('none': not clipped)")
    parser.add_argument("--change-sigmas", nargs="+", default=[str(change.CHANGE_SIGMAS).lower()],
                        help="candidate change.CHANGE_SIGMAS values ('none': one pass)")
    parser.add_argument("--far-margins", nargs="+", default=[str(shift.FAR_MARGIN).lower()],
                        help="candidate shift.FAR_MARGIN values ('none': the best agreement wins)")
    parser.add_argument("--far-shifts", action="store_true",
                        help=f"register the set far-shifts (frames off by up to {FAR_SHIFT:g} LR px), for --sets")
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first N scenes of each set's draw (fresh scenes for a new choice)")
    args = parser.parse_args()
    if args.far_shifts:
        base = adaptation.EVIDENCE_SETS["in-distribution"]
        far = replace(base.conditions, max_shift_lr=FAR_SHIFT)
        adaptation.EVIDENCE_SETS["far-shifts"] = replace(base, conditions=far)
    for set_name in args.sets:
        scenes = evidence_scenes(set_name, "validation", args.scenes, args.lr_size, skip=args.skip)
        for sigma, clip, sigmas, margin in itertools.product(args.sigmas, args.clips, args.change_sigmas,
                                                             args.far_margins):
            shift.NOISE_SIGMA, shift.HIGHPASS_CLIP = sigma, None if clip == "none" else float(clip)
            change.CHANGE_SIGMAS = None if sigmas == "none" else float(sigmas)
            shift.FAR_MARGIN = None if margin == "none" else float(margin)
            started = time.perf_counter()
            errors = frame_errors(scenes)
            print(f"{set_name:16s} sigma {sigma:3.1f} clip {clip:>4} change {sigmas:>4} far margin {margin:>4}: "
                  f"median {np.median(errors):.4f} LR px, 95th percentile "
                  f"{np.percentile(errors, 95):.3f}, worst {errors.max():.2f}, above {FAILED} px "
                  f"{int((errors > FAILED).sum())}/{errors.size} ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
