"""The reference frame (registration/reference.py) on the real sample scene: a function of the
content that neither a few screened pixels nor a change in part of the scene moves."""

from __future__ import annotations

import numpy as np

from misr_engine.registration.reference import clearest_frame, sharpness


def test_a_few_masked_pixels_do_not_change_the_reference_frame(sample_stack):
    """The reference (and with it the SR's sub-pixel position) is chosen on whole percent of
    clear pixels: a screened speckle on the sharpest clear frame keeps it the reference."""
    reference = clearest_frame(sample_stack.masks, sample_stack.frames)
    masks = sample_stack.masks.copy()
    masks[reference, 70:72, 70:72] = False
    assert clearest_frame(masks, sample_stack.frames) == reference


def test_a_field_that_changed_in_other_frames_does_not_change_the_reference_frame(sample_stack):
    """A 30 x 30 field raised by 1500 DN in half of the fully clear frames other than the
    reference adds edges to them; the reference stays (with a frame-wide mean of squared
    differences one of them became the reference, and the SR moved away from the field)."""
    frames, masks = sample_stack.frames.copy(), sample_stack.masks
    reference = clearest_frame(masks, frames)
    clear = np.flatnonzero(masks.reshape(len(masks), -1).mean(axis=1) > 0.9)
    changed = [t for t in clear if t != reference][::2]
    assert changed
    frames[changed, 50:80, 60:90] += 1500.0
    assert clearest_frame(masks, frames) == reference


def test_sharpness_ranks_blurred_frames_below_sharp_ones(sample_stack):
    frame, mask = sample_stack.frames[0].astype(np.float64), np.ones(sample_stack.frames[0].shape, bool)
    blurred = (frame + np.roll(frame, 1, axis=0) + np.roll(frame, 1, axis=1)) / 3
    assert sharpness(blurred, mask) < sharpness(frame, mask)
    assert sharpness(frame, np.zeros_like(mask)) == 0.0
