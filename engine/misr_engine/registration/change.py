"""Pixels that changed in some frames, left out of the registration.

A field harvested, flooded or built on between the dates differs from the other frames far more
than noise, aliasing or a gain does; its edges pull the shifts of the frames that show it (and
the choice of the reference frame) towards or away from the others'. The registration therefore
runs twice: once on the clear pixels, then on the clear pixels that agree with the other frames
(`steady_masks`).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from ..imaging.resample import shift_image
from ..imaging.robust import MAD_TO_STD, robust_std
from .reference import clearest_frame
from .shift import agreement, onto_common_grid

CHANGE_SIGMAS: float | None = 6.0
"""A pixel of a frame changed where it departs from the frames' per-pixel median by more than
this many robust standard deviations, the larger of the frames' there (a minority that changed
does not widen it; texture that every frame renders differently, blur or aliasing, does) and
of that frame's departures over the window (None: nothing left out, one pass). Chosen on
validation scenes, 24 per set (scripts/registration_study.py --change-sigmas, docs/evaluation/
registration_change_pass_study.log; scripts/normalisation_floor_study.py --knob change,
registration_change_pass_validation.log): frames off by more than 0.25 LR px with surface change
12 -> 4 of 213, strong change 13 -> 3, out of range 11 -> 11, in distribution 0 -> 0; the SR on
the surface-change set +0.33 dB [+0.02, +0.87], out of range +0.015 [-0.000, +0.046], low
contrast -0.025 [-0.115, +0.068], training ranges -0.034 [-0.103, +0.010] (one scene -0.71 dB:
the pass registers a frame the first had 1.04 px off within 0.05 px, and that scene's SR scores
42.98 dB with the true shifts, 43.94 with the wrong one). At 4 sigmas: +0.25 / -0.010 / -0.011
/ -0.025 dB. The change-away figure on validation scenes did not improve (0.50% -> 0.56% [0.20,
1.03] at 6, 0.45% at 4: change_away_change_pass_validation.log)."""
MAX_CHANGED_SHARE = 0.5
"""A frame that would lose more than this share of its clear pixels keeps them all: what it
shows is not a local change (haze over the frame, another season) and registration needs them."""
MAX_MOVE = 2.0
"""LR pixels: passes further apart than this are told apart by their agreement only where the
second agrees well (FAR_AGREEMENT), else the first is kept: a second pass that lost the texture it
was left with (a frame mostly cloudy, its clear part mostly changed) threw a frame 26 px off a
64 px crop, its few steady pixels agreeing there by chance a little better (0.22 against 0.16;
tests/engine/registration/test_change.py), where a first pass a change threw 15 px off is undone
by a second that agrees well. A change's pull undone moves a frame up to 1.6 px on faint scenes."""
FAR_AGREEMENT = 0.5
"""The high-pass correlation (``shift.agreement``) a second pass more than MAX_MOVE from the first
needs to replace it (None: never replaced, as before 2026-12-03). Chosen on validation scenes,
24 per set (docs/evaluation/registration_kept_pass_validation.log): surface change +0.038 dB
[+0.000, +0.114], strong change +0.048 [+0.000, +0.145], low contrast +0.015 [+0.000, +0.044]
(one scene each), in distribution, out of range and the coarse-band stand-in unchanged."""
MIN_FRAMES = 3
"""The per-pixel median needs at least this many clear frames there (else nothing is flagged)."""
GROW = 1
"""LR pixels the changed areas are grown by: a change's blurred edge is changed too."""


def steady_masks(frames: np.ndarray, masks: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """`masks` (T, h, w) without the pixels that changed in their frame (`changed_pixels`):
    what the second registration pass correlates."""
    masks = np.asarray(masks, bool)
    if CHANGE_SIGMAS is None or len(frames) < MIN_FRAMES:
        return masks
    changed = changed_pixels(frames, masks, shifts)
    too_many = changed.sum(axis=(1, 2)) > MAX_CHANGED_SHARE * masks.sum(axis=(1, 2))
    changed[too_many] = False
    return masks & ~changed


def kept_shifts(frames: np.ndarray, steady: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per frame, the first or the second pass's shift (T, 2), whichever registers it better onto
    the second pass's reference (``shift.agreement`` on the steady pixels; relative to that
    reference); when they are more than MAX_MOVE apart, the second only where it agrees well
    (FAR_AGREEMENT): leaving pixels out can also leave a frame too little texture for its search."""
    reference = clearest_frame(steady, frames)
    kept = np.asarray(second, np.float64) - second[reference]
    for t, candidate in enumerate(np.asarray(first, np.float64) - first[reference]):
        if t == reference or not steady[t].any():
            continue
        pair = (frames[reference], frames[t], steady[reference], steady[t])
        second_score = agreement(*pair, kept[t])
        first_better = agreement(*pair, candidate) > second_score
        if np.abs(kept[t] - candidate).max() > MAX_MOVE:
            first_better |= FAR_AGREEMENT is None or second_score < FAR_AGREEMENT
        if first_better:
            kept[t] = candidate
    return kept


def changed_pixels(frames: np.ndarray, masks: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Where (T, h, w) each clear pixel departs from the other frames (CHANGE_SIGMAS), in the
    frame's own grid: every frame moved by -`shifts` (LR px) onto the common grid, standardised
    (median and MAD of its clear pixels, so that gains and offsets do not count), compared with
    the per-pixel median of the frames clear there, the flags grown by GROW and moved back.
    In float32, the stack's copies released as soon as they are used: the scene passes run it
    on rows of tiles across the whole width (``inference.budget`` counts them)."""
    frames = np.asarray(frames, np.float32)
    clear = masks & np.isfinite(frames)
    aligned, aligned_clear = onto_common_grid(
        np.stack([np.where(m, f, _median(f[m])) for f, m in zip(frames, clear)]), clear, shifts)
    departures = np.full(aligned.shape, np.nan, np.float32)
    for t, (image, usable) in enumerate(zip(aligned, aligned_clear)):
        if usable.sum() > 1:
            values = image[usable].astype(np.float64)
            departures[t][usable] = (values - np.median(values)) / max(robust_std(values), 1e-12)
    del aligned, aligned_clear
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels clear in no frame
        median = np.nanmedian(departures, axis=0)
        median[np.isfinite(departures).sum(axis=0) < MIN_FRAMES] = np.nan
        departures -= median  # each frame's standardised value minus the frames' median there
        spread = MAD_TO_STD * np.nanmedian(np.abs(departures), axis=0)  # how much the frames disagree here
    changed = np.zeros(frames.shape, bool)
    for t, (departure, (dy, dx)) in enumerate(zip(departures, shifts)):
        valid = np.isfinite(departure)
        if valid.sum() < 2:
            continue
        scale = np.maximum(spread[valid], robust_std(departure[valid].astype(np.float64)))
        departure = departure - np.median(departure[valid])
        outlier = np.zeros(valid.shape, bool)
        outlier[valid] = np.abs(departure[valid]) > CHANGE_SIGMAS * np.maximum(scale, 1e-12)
        if outlier.any():
            grown = ndimage.binary_dilation(outlier, iterations=GROW) if GROW else outlier
            changed[t] = shift_image(grown.astype(np.float32), dy, dx, order=1, mode="constant") > 0.0
    return changed & clear


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else 0.0
