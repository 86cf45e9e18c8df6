"""How far from a changed field does the SR move, per registration setting? (VALIDATION scenes)

Issue 14's change-away figure on validation scenes, so that the setting it depends on is chosen
without the embedded sample (whose figure, in tests/engine/inference/test_change_and_tiles.py,
is the test). On these scenes, unlike the sample, the registration is what moves most: a
changed field pulled shifts, on faint scenes by whole pixels. Each scene: a crop of the
validation window degraded in the training ranges without change (9 frames, 80 x 80 LR), run
before and after one square field (17 x 17 LR px, 4.5% of the scene, as the sample's 30 x 30 of
140 x 140) is raised by 1.4 x the scene's level (the sample's 1500 DN on 1086) in 4 of the 9
frames, on the ground (it moves with each frame's simulated misregistration). Printed per
candidate clip of the registration's high-passed images (``registration.shift.HIGHPASS_CLIP``)
and per candidate centre of the output grid (``registration.stack.CENTRE_TRIM``; 'none': the
frames' median position), and with the field in the reference frame or not:
the mean |after - before| more than 20 LR px from the field, in % of the level, with its 95%
bootstrap interval over scenes, and the cPSNR of the unchanged scenes (the change against the
first candidate, paired).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/change_away_study.py --clips none 1 \\
        | tee docs/evaluation/change_away_validation.log
    OMP_NUM_THREADS=1 .venv/bin/python scripts/change_away_study.py --clips 1 --centre-trims none 0.125 0.25
    OMP_NUM_THREADS=1 .venv/bin/python scripts/change_away_study.py --clips 1 --change-sigmas none 6 4 \\
        --scenes 24 | tee docs/evaluation/change_away_change_pass_validation.log

``--change-sigmas`` compares registrations with and without a second pass that leaves out
the pixels that changed (``registration.change.CHANGE_SIGMAS``); ``--units`` what the scene's units
make of the pixels that changed (``inference.normalisation.CHANGED_PIXELS``: kept, left out,
imputed); ``--hold-registration`` registers the changed stack as the unchanged one was (what the
other estimates alone move); ``--hold-radiometry`` maps them with the unchanged stack's radiometric
fits; ``--changed-frames N`` raises the field in N of the 9 frames; ``--psf-widths chosen fixed``
compares the back-projection's PSF width chosen per scene (as the engine runs) with the width fixed
at 1.2 HR px, and ``--per-scene`` then also names the scenes whose width the change moved
(docs/evaluation/change_away_psf_width_validation.log); ``--skip N`` leaves out the first N scenes
of the draw (fresh scenes; docs/evaluation/far_shift_validation.log):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/change_away_study.py --clips 1 --scenes 24 \\
        --units kept "left out" imputed [--hold-registration --changed-frames 2] \\
        | tee -a docs/evaluation/change_away_units_validation.log
"""

from __future__ import annotations

import argparse
import itertools
from unittest import mock

import numpy as np
import torch
from change_attribution import Freezer
from misr_engine import SCALE
from misr_engine.evaluation.adaptation import (
    mean_interval,
    paired_interval,
    scene_score,
)
from misr_engine.evaluation.change_study import (
    FIELD_SIDE,
    FRAMES,
    LR_SIDE,
    RELATIVE_CHANGE,
    study_scenes,
    with_raised_field,
)
from misr_engine.inference import normalisation, tiled
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack
from misr_engine.registration import change, radiometry, shift, stack
from misr_engine.registration.stack import reference_frame, registration_window
from misr_engine.registration.streamed import scene_radiometry, stack_registration
from psf_limits_option import add_psf_limits_option, apply_psf_limits

MARGIN = 20
CHANGED_FRAMES = 4


def field_slices(rng: np.random.Generator) -> tuple[slice, slice]:
    """A random FIELD_SIDE square inside the scene."""
    row, col = rng.integers(0, LR_SIDE - FIELD_SIDE, size=2)
    return slice(row, row + FIELD_SIDE), slice(col, col + FIELD_SIDE)


def away_map(shape: tuple[int, int], field: tuple[slice, slice]) -> np.ndarray:
    """HR pixels more than MARGIN LR px from the field."""
    away = np.ones(shape, bool)
    away[max(0, field[0].start - MARGIN) * SCALE:(field[0].stop + MARGIN) * SCALE,
         max(0, field[1].start - MARGIN) * SCALE:(field[1].stop + MARGIN) * SCALE] = False
    return away


def print_registration_moves(index: int, before: Stack, after: Stack, which: np.ndarray) -> None:
    """One scene's registration before and after the change: the reference frame, the move
    common to the frames (their median move: how far the output grid moved against most of
    them), the largest move of a changed and of an unchanged frame beyond it (LR px), and
    whether a whole-pixel part changed."""
    (first, first_reference), (second, second_reference) = stack_registration(before), stack_registration(after)
    moves = second - first
    common = np.median(moves, axis=0)
    relative = np.abs(moves - common)
    changed = np.isin(np.arange(len(moves)), which)
    flipped = bool((np.round(first) != np.round(second)).any())
    print(f"scene {index:2d}: reference {first_reference} -> {second_reference}, common move "
          f"({common[0]:+.3f}, {common[1]:+.3f}), changed frames up to {relative[changed].max():.3f}, "
          f"others up to {relative[~changed].max():.3f}{', a whole-pixel part flipped' if flipped else ''}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--clips", nargs="+", default=["none", "1"],
                        help="candidate shift.HIGHPASS_CLIP values ('none': not clipped)")
    parser.add_argument("--centre-trims", nargs="+", default=["none"],
                        help="candidate stack.CENTRE_TRIM values ('none': the median position)")
    parser.add_argument("--change-sigmas", nargs="+", default=[str(change.CHANGE_SIGMAS).lower()],
                        help="candidate registration.change.CHANGE_SIGMAS values ('none': no second pass)")
    parser.add_argument("--gain-ramps", nargs="+", default=[str(radiometry.GAIN_ERROR_RAMP).lower()],
                        help="candidate registration.radiometry.GAIN_ERROR_RAMP values ('none': the hard bound)")
    parser.add_argument("--units", nargs="+", default=[normalisation.CHANGED_PIXELS],
                        choices=normalisation.CHANGED_PIXEL_RULES,
                        help="candidate normalisation.CHANGED_PIXELS rules (the changed pixels in the scene's units)")
    parser.add_argument("--psf-widths", nargs="+", default=["chosen"], choices=["chosen", "fixed"],
                        help="candidate back-projection PSF widths: chosen per scene (inference.psf_width, as "
                             "the engine runs) or fixed at the engine's 1.2 HR px (tiled.SCENE_PSF_WIDTH False)")
    parser.add_argument("--changed-frames", type=int, default=CHANGED_FRAMES,
                        help=f"frames (of {FRAMES}) the field is raised in")
    parser.add_argument("--hold-registration", action="store_true",
                        help="register the changed stack as the unchanged one was: what the other scene "
                             "estimates (radiometry, units) alone move")
    parser.add_argument("--hold-radiometry", action="store_true",
                        help="map the changed stack's frames with the unchanged one's radiometric fits")
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first N scenes of the draw (fresh scenes for a new choice; the "
                             "others' scenes and fields as without it)")
    parser.add_argument("--per-scene", action="store_true", help="also print every scene's figure")
    parser.add_argument("--weights", help="PIUnet weights file (default: the shipped weights)")
    add_psf_limits_option(parser)
    parser.add_argument("--registration-moves", action="store_true",
                        help="print, per scene, what the change moves in the registration (no SR)")
    args = parser.parse_args()
    apply_psf_limits(args.psf_limits)
    scenes = study_scenes(args.skip + args.scenes)
    model = load_model("piunet", args.weights).model
    rng = np.random.default_rng(0)
    changes, changed_frames = [], []
    for frames, masks, shifts in zip(scenes["frames"], scenes["masks"], scenes["true_shifts"]):
        field, which = field_slices(rng), rng.choice(FRAMES, args.changed_frames, replace=False)
        changed_frames.append(which)
        changed = with_raised_field(frames, masks, shifts, field, which)
        window = (slice(None), *registration_window(frames.shape[-2:]))
        changes.append((field, changed, int(reference_frame(frames[window], masks[window])) in which))
    scenes = {key: scenes[key][args.skip:] for key in ("frames", "masks", "hr")}
    changes, changed_frames = changes[args.skip:], changed_frames[args.skip:]
    after = f" after the first {args.skip}" if args.skip else ""
    print(f"piunet, validation window, {args.scenes} scenes{after} of {LR_SIDE} x {LR_SIDE} LR, {FRAMES} frames; "
          f"a {FIELD_SIDE} px field +{RELATIVE_CHANGE} x level in {args.changed_frames} frames"
          + ("; the changed stack registered as the unchanged one" if args.hold_registration else "")
          + ("; its radiometric fits the unchanged one's" if args.hold_radiometry else "")
          + (f"; PSF width limits {args.psf_limits}" if args.psf_limits else ""))
    if args.registration_moves:
        for index, (frames, masks, (_, changed, _), which) in enumerate(zip(scenes["frames"], scenes["masks"], changes,
                                                                             changed_frames)):
            print_registration_moves(index, Stack.in_memory(frames, masks), Stack.in_memory(changed, masks), which)
        return
    in_reference = [field_in_reference for _, _, field_in_reference in changes]
    first = None
    for value, centre, sigmas, units, ramp, width in itertools.product(
            args.clips, args.centre_trims, args.change_sigmas, args.units, args.gain_ramps, args.psf_widths):
        tiled.SCENE_PSF_WIDTH = width == "chosen"
        radiometry.GAIN_ERROR_RAMP = None if ramp == "none" else float(ramp)
        normalisation.CHANGED_PIXELS = units
        change.CHANGE_SIGMAS = None if sigmas == "none" else float(sigmas)
        shift.HIGHPASS_CLIP = None if value == "none" else float(value)
        stack.CENTRE_TRIM = None if centre == "none" else float(centre)
        moved, scores, widths = [], [], []
        for frames, masks, hr, (field, changed, _) in zip(scenes["frames"], scenes["masks"], scenes["hr"], changes):
            registration, fits = Freezer(stack_registration), Freezer(scene_radiometry)
            with mock.patch.object(tiled, "stack_registration", registration), \
                    mock.patch.object(tiled, "scene_radiometry", fits):
                used: list[float] = []
                before = super_resolve(Stack.in_memory(frames, masks), model, torch.device("cpu"),
                                       on_psf_sigma=used.append)[0]
                registration.frozen, fits.frozen = args.hold_registration, args.hold_radiometry
                after = super_resolve(Stack.in_memory(changed, masks), model, torch.device("cpu"),
                                      on_psf_sigma=used.append)[0]
            widths.append(tuple(used))
            away = away_map(before.shape, field)
            moved.append(100 * float(np.mean(np.abs(after - before)[away])) / float(np.mean(before)))
            scores.append(scene_score(before, hr))
        mean, low, high = mean_interval(moved)
        line = (f"clip {value:>4}, centre trim {centre:>5}, change sigmas {sigmas:>4}, changed pixels {units}, "
                f"gain ramp {ramp:>5}, PSF width {width}: away {mean:.4f}% [{low:.3f}, {high:.3f}] (worst "
                f"{max(moved):.3f}%; field in the reference {np.mean(np.compress(in_reference, moved)):.3f}% "
                f"on {sum(in_reference)} scenes, elsewhere "
                f"{np.mean(np.compress(np.logical_not(in_reference), moved)):.3f}%), "
                f"cPSNR {np.mean(scores):.3f} dB")
        if first is None:
            first = scores
        else:
            gain, glow, ghigh = paired_interval(scores, first)
            line += f" ({gain:+.3f} [{glow:+.3f}, {ghigh:+.3f}])"
        print(line, flush=True)
        if args.per_scene:
            print("  per scene (% of the level): " + " ".join(f"{m:.4f}" for m in moved), flush=True)
            flipped = [(index, w) for index, w in enumerate(widths) if w[0] != w[1]]
            print(f"  PSF width (HR px) moved by the change on {len(flipped)} of {len(widths)} scenes: "
                  + ", ".join(f"scene {index} {w[0]:g} -> {w[1]:g}" for index, w in flipped), flush=True)


if __name__ == "__main__":
    main()
