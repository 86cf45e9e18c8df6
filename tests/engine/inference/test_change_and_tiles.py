"""What the SR shows when the surface changes, and that it does not depend on the tile size.

The SR shows the clear-temporal-mean surface, in the reference frame's radiometry (README, "How
it works"). Raise one field of the real sample scene by 1500 digital numbers in 4 of its 8 usable
frames (a harvest between dates): inside the field the SR follows the clear-temporal-mean
change; away from it nothing moves, because the radiometric fits are robust and per scene (a
real change is not radiometry), the registration and the scene's units leave the changed pixels
out, and no layer pools over the whole tile.
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
def changed_runs(usable_stack, shipped_model):
    frames = usable_stack.frames.copy()
    changed = np.zeros(len(frames), bool)
    changed[[0, 2, 4, 6]] = True
    frames[np.ix_(changed, np.arange(*FIELD[0].indices(140)), np.arange(*FIELD[1].indices(140)))] += CHANGE
    before = super_resolve(usable_stack, shipped_model, CPU)[0]
    after = super_resolve(Stack.in_memory(frames, usable_stack.masks), shipped_model, CPU)[0]
    return before, after, changed


def hr(region: tuple[slice, slice]) -> tuple[slice, slice]:
    return tuple(slice(s.start * SCALE, s.stop * SCALE) for s in region)


@pytest.mark.slow
def test_away_from_a_changed_field_the_sr_does_not_move(changed_runs, usable_stack):
    before, after, _ = changed_runs
    away = np.ones(before.shape, bool)
    away[hr((slice(FIELD[0].start - MARGIN, FIELD[0].stop + MARGIN),
             slice(FIELD[1].start - MARGIN, FIELD[1].stop + MARGIN)))] = False
    level = float(np.nanmean(before))
    moved = np.nanmean(np.abs(after - before)[away])
    # issue 14 asks < 0.05% of the level: measured 0.042% (0.45 DN) with the shipped weights and
    # the units computed without the changed pixels (normalisation.UNITS_WITHOUT_CHANGE; with
    # them 0.076%, before the noise floor 0.12%); 0.30% while a frame-wide sharpness let the
    # change pick the reference frame, 2.8% with fits against one reference frame and a plain
    # least-squares registration (scripts/change_attribution.py)
    assert moved < 0.0005 * level, f"moved {moved:.2f} DN on average, level {level:.0f}"


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
