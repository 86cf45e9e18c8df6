"""A stack's shifts from its frames registered in pairs, not only against one reference frame.

Every frame is measured against several others (``shift.measure_shift``), and the positions
that agree best with all trusted measurements are solved for by robust least squares: each
position rests on several measurements, so the noise of one frame (the reference's above all)
averages out, and a pair that a changed field or a faint texture threw off is outvoted instead
of moving a frame. Chosen on validation scenes (scripts/registration_study.py --partners,
docs/evaluation/registration_pairwise_study.log; 24 scenes per set, 64 x 64 LR, 9 frames):
frames off by more than 0.25 LR px in distribution 0 / 0 of 210 (median 0.0057 -> 0.0038 px),
out of the training ranges 11 -> 2 of 211, with a changed field 12 -> 1 of 213, with a strong
change 13 -> 5, on low-contrast scenes 36 -> 14 of 210; for about 4.5 times the time of one
reference with 9 frames.
"""

from __future__ import annotations

import numpy as np

from .reference import canonical_order
from .shift import measure_shift

PARTNERS = 8
"""Each frame is measured against this many of the clearest frames (besides itself): with 9
frames or fewer every pair; 1 is the former scheme, every frame against the reference only."""
MIN_COMMON = 16
"""Pairs with fewer clear pixels in common (unshifted) are not measured."""
ROBUST_ITERATIONS = 10
MIN_RESIDUAL_SCALE = 0.02
"""LR px: the residual scale of the robust solve never falls below this (measurement noise)."""


def partner_pairs(frames: np.ndarray, masks: np.ndarray) -> list[tuple[int, int]]:
    """The (i, j) pairs to measure, i < j, among frames with a clear pixel: every frame with
    each of the PARTNERS clearest (then sharpest) others."""
    usable = masks.reshape(len(masks), -1).any(axis=1)
    order = [int(t) for t in canonical_order(frames, masks) if usable[t]]
    pairs = set()
    for t in order:
        for partner in [p for p in order if p != t][:PARTNERS]:
            pairs.add((min(t, partner), max(t, partner)))
    return sorted(pairs)


def connected(pairs: list[tuple[int, int]], start: int) -> set[int]:
    """The frames linked to `start` by measured pairs."""
    reached, frontier = {start}, [start]
    while frontier:
        t = frontier.pop()
        for i, j in pairs:
            for a, b in ((i, j), (j, i)):
                if a == t and b not in reached:
                    reached.add(b)
                    frontier.append(b)
    return reached


def solve_positions(pairs: list[tuple[int, int]], measured: np.ndarray, count: int, reference: int) -> np.ndarray:
    """Positions (count, 2), the reference's at 0, that best explain every measurement
    measured[k] = position[j] - position[i] of pairs[k] = (i, j): least squares with Cauchy
    weights on the residuals (scale: their MAD); frames no measurement links to the reference
    stay at 0."""
    positions = np.zeros((count, 2))
    linked = sorted(connected(pairs, reference) - {reference})
    if not linked:
        return positions
    column = {t: k for k, t in enumerate(linked)}
    kept = [k for k, (i, j) in enumerate(pairs) if i in column or j in column]
    design = np.zeros((len(kept), len(linked)))
    for row, k in enumerate(kept):
        i, j = pairs[k]
        if j in column:
            design[row, column[j]] += 1.0
        if i in column:
            design[row, column[i]] -= 1.0
    target = np.asarray(measured, np.float64)[kept]
    weights = np.ones(len(kept))
    for _ in range(ROBUST_ITERATIONS):
        root = np.sqrt(weights)[:, None]
        solution = np.linalg.lstsq(design * root, target * root, rcond=None)[0]
        residuals = np.abs(design @ solution - target).max(axis=1)
        scale = max(1.4826 * float(np.median(residuals)), MIN_RESIDUAL_SCALE)
        weights = 1.0 / (1.0 + (residuals / (2.0 * scale)) ** 2)
    positions[linked] = solution
    return positions


def pairwise_shifts(frames: np.ndarray, masks: np.ndarray, reference: int, upsample_factor: int = 20) -> np.ndarray:
    """Shifts (T, 2), LR px, of (T, h, w) frames relative to the `reference` frame, from the
    trusted pair measurements (`partner_pairs`, `solve_positions`); (0, 0) for frames that no
    trusted measurement links to the reference (the products' own geolocation)."""
    pairs, measured = [], []
    for i, j in partner_pairs(frames, masks):
        if (masks[i] & masks[j]).sum() < MIN_COMMON:
            continue
        shift = measure_shift(frames[i], frames[j], masks[i], masks[j], upsample_factor)
        if shift is not None:
            pairs.append((i, j))
            measured.append(shift)
    return solve_positions(pairs, np.asarray(measured).reshape(-1, 2), len(frames), reference)
