"""A frame far noisier than the others (a hazy or dark date, another sensor) is named in the run's
warnings (``Normalisation.noisy_frames``), on the real sample scene."""

from __future__ import annotations

import numpy as np
import torch
from misr_engine.inference.normalisation import NOISY_FRAME_RATIO, Normalisation
from misr_engine.inference.tiled import super_resolve
from misr_engine.rasters.stack import Stack

CROP = (slice(20, 68), slice(30, 78))  # LR px of the sample
NOISY = 3  # the frame made noisy (0-based)


def _warnings_of(stack: Stack, model: torch.nn.Module) -> list[str]:
    heard: list[str] = []
    super_resolve(stack, model, torch.device("cpu"), on_warning=heard.append)
    return [message for message in heard if "times as noisy" in message]


def test_a_frame_far_noisier_than_the_others_is_named_and_no_other(sample_stack, shipped_model):
    frames, masks = sample_stack.frames[(slice(None), *CROP)], sample_stack.masks[(slice(None), *CROP)]
    clean = Stack(frames, masks, sample_stack.grid, list(sample_stack.paths))
    assert _warnings_of(clean, shipped_model) == []  # the real frames: none far noisier than the others

    frame_noise = Normalisation.of_blocks([(frames, masks)]).frame_noise  # each frame's own, on its clear blocks
    noisy = frames.copy()
    rng = np.random.default_rng(0)
    noisy[NOISY] += rng.normal(0.0, 2 * NOISY_FRAME_RATIO * np.median(frame_noise), size=noisy[NOISY].shape)
    warnings = _warnings_of(Stack(noisy, masks, sample_stack.grid, list(sample_stack.paths)), shipped_model)
    assert len(warnings) == 1
    assert warnings[0].startswith("frame_04.tif is ")
    times = float(warnings[0].split(" is ")[1].split(" times")[0])
    assert 1.5 * NOISY_FRAME_RATIO < times < 3 * NOISY_FRAME_RATIO
