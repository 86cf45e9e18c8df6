"""What the SR shows when the surface changes, and that it does not depend on the tile size.

The SR shows the clear-temporal-mean surface, in the reference frame's radiometry (README, "How
it works"). Raise one field of the real sample scene by 1500 digital numbers in 4 of its 8 usable
frames (a harvest between dates): inside the field the SR follows the clear-temporal-mean
change; away from it nothing moves, because the radiometric fits are robust and per scene (a
real change is not radiometry), the registration leaves the changed pixels out and the scene's
units impute them, and no layer pools over the whole tile.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from misr_engine import SCALE
from misr_engine.inference.tiled import super_resolve
from misr_engine.rasters.stack import Stack

CPU = torch.device("cpu")
CHANGE = 1500.0
FIELD = (slice(50, 80), slice(60, 90))  # LR pixels of the 140 x 140 sample
MARGIN = 20  # LR pixels around the field left out of "away from it" (the network's reach)


@pytest.fixture(scope="module")
def usable_stack(sample_stack):
    keep = sample_stack.clear_fraction > 0  # the overcast frame is dropped by the engine anyway
    return Stack.in_memory(sample_stack.frames[keep], sample_stack.masks[keep])


@pytest.fixture(scope="module")
def before_run(usable_stack, shipped_model):
    return super_resolve(usable_stack, shipped_model, CPU)[0]


def changed_run(usable_stack, model, which: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The SR of the sample with the field raised in the usable frames `which`, and which those are."""
    frames = usable_stack.frames.copy()
    changed = np.zeros(len(frames), bool)
    changed[list(which)] = True
    frames[np.ix_(changed, np.arange(*FIELD[0].indices(140)), np.arange(*FIELD[1].indices(140)))] += CHANGE
    return super_resolve(Stack.in_memory(frames, usable_stack.masks), model, CPU)[0], changed


@pytest.fixture(scope="module")
def changed_runs(usable_stack, shipped_model, before_run):
    return (before_run, *changed_run(usable_stack, shipped_model, (0, 2, 4, 6)))


def hr(region: tuple[slice, slice]) -> tuple[slice, slice]:
    return tuple(slice(s.start * SCALE, s.stop * SCALE) for s in region)


@pytest.mark.slow
@pytest.mark.parametrize("which, bound", [((0, 3, 6), 0.0005), ((0, 2, 4, 6), 0.001)],
                         ids=["field in 3 of 8 frames", "field in half the frames"])
def test_away_from_a_changed_field_the_sr_does_not_move(usable_stack, shipped_model, before_run, which, bound):
    """Issue 14 asks < 0.05% of the level. Measured with the shipped weights, the changed pixels
    imputed in the scene's units (normalisation.CHANGED_PIXELS; 'left out' / 'kept' after the
    slash): field in 3 of 8 frames 0.012% (0.072% / 0.054%), in 1 of 8 0.012% (0.038% / 0.031%);
    in half the frames, where no rule can tell the changed half, 0.060% (0.042% / 0.076%); on the
    trimmed-mean grid (registration.stack.CENTRE_TRIM, 2026-12-03) 0.009% and 0.058%. Earlier,
    with the pixels kept: 0.12% before the noise floor, 0.30% while a frame-wide sharpness let the
    change pick the reference frame, 2.8% with fits against one reference frame and a plain
    least-squares registration (scripts/change_attribution.py --frames ... --changed-pixels ...)."""
    before, after = before_run, changed_run(usable_stack, shipped_model, which)[0]
    away = np.ones(before.shape, bool)
    away[hr((slice(FIELD[0].start - MARGIN, FIELD[0].stop + MARGIN),
             slice(FIELD[1].start - MARGIN, FIELD[1].stop + MARGIN)))] = False
    level = float(np.nanmean(before))
    moved = np.nanmean(np.abs(after - before)[away])
    assert moved < bound * level, f"moved {moved:.2f} DN on average, {100 * moved / level:.3f}% of {level:.0f}"


@pytest.mark.slow
def test_inside_a_changed_field_the_sr_follows_the_clear_temporal_mean(changed_runs, usable_stack):
    before, after, changed = changed_runs
    masks = usable_stack.masks
    share = (masks & changed[:, None, None]).sum(axis=0) / np.maximum(masks.sum(axis=0), 1)
    inner = (slice(FIELD[0].start + 3, FIELD[0].stop - 3), slice(FIELD[1].start + 3, FIELD[1].stop - 3))
    expected = CHANGE * float(np.mean(share[inner]))
    rise = float(np.nanmean((after - before)[hr(inner)]))
    assert abs(rise - expected) < 0.05 * expected, f"rose {rise:.0f} DN, clear-temporal mean {expected:.0f}"


@pytest.mark.slow
def test_the_sr_does_not_depend_on_the_tile_size(usable_stack, shipped_model):
    small = super_resolve(usable_stack, shipped_model, CPU, tile_size=48, overlap=16)[0]
    large = super_resolve(usable_stack, shipped_model, CPU, tile_size=160, overlap=16)[0]
    level = float(np.nanmean(large))
    assert abs(float(np.nanmean(small)) - level) < 0.0005 * level
    assert float(np.nanmean(np.abs(small - large))) < 0.002 * level


@pytest.mark.slow
def test_a_frame_without_a_clear_pixel_changes_nothing(usable_stack, shipped_model, before_run):
    """A ninth frame cloudy over the whole scene (its pixels one of the others', nothing clear)
    leaves the SR where it was. Measured: 0.029% of the level on average (the network's channel
    gate averages its features over every frame, as it was trained). Before 2026-12-02 (evening)
    it moved it by 0.90% here (1.2-3% on validation scenes), three ways: its placeholder gain and
    offset voted in the frames' median radiometry, its shift (none measured) put it where the
    reference frame is, which a change elsewhere can swap, and its phase reshuffled the halves
    of the back-projection's agreement test."""
    frames = np.concatenate([usable_stack.frames, usable_stack.frames[:1]])
    masks = np.concatenate([usable_stack.masks, np.zeros_like(usable_stack.masks[:1])])
    with_cloudy = super_resolve(Stack.in_memory(frames, masks), shipped_model, CPU)[0]
    level = float(np.nanmean(before_run))
    moved = float(np.nanmean(np.abs(with_cloudy - before_run)))
    assert moved < 0.0006 * level, f"moved {moved:.2f} DN on average, {100 * moved / level:.3f}% of {level:.0f}"
