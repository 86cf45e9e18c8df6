"""The change study's scenes: a field that changed in some frames of a stack (issue 14).

Crops of the validation window degraded in the training ranges without change (FRAMES frames of
LR_SIDE x LR_SIDE LR px), and one square field raised by RELATIVE_CHANGE x the scene's level in
some frames, on the ground: it moves with each frame's simulated misregistration.
``scripts/change_away_study.py`` measures how far from it the SR moves; tests take single draws.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import SCALE
from ..datasets.samples import build_samples
from ..datasets.sentinel2 import VALIDATION_WINDOW, sentinel2_band_paths
from ..datasets.simulate import Degradation
from ..imaging.resample import shift_image

LR_SIDE, FRAMES, FIELD_SIDE = 80, 9, 17
RELATIVE_CHANGE = 1.4
"""The field's rise over the scene's level (the embedded sample's 1500 DN on 1086)."""
BANDS = ("B02", "B03", "B04", "B08")


def study_scenes(count: int) -> dict[str, np.ndarray]:
    """The first `count` scenes of the study's draw (``build_samples``: frames, masks, hr,
    true_shifts, ...); the first scenes are the same whatever `count`."""
    return build_samples(sentinel2_band_paths(BANDS), VALIDATION_WINDOW, count, LR_SIDE, FRAMES, seed=7,
                         conditions=replace(Degradation(), change_probability=0.0), workers=1,
                         featureless_keep=0.0, registered=False)


def field_in_frame(field: tuple[slice, slice], shift: np.ndarray) -> np.ndarray:
    """The field (LR rows, columns; 1 inside) as a frame misregistered by `shift` (LR px) sees it:
    an HR box moved by the shift, then averaged over the SCALE x SCALE HR pixels of every LR pixel."""
    box = np.zeros((LR_SIDE * SCALE, LR_SIDE * SCALE))
    box[field[0].start * SCALE:field[0].stop * SCALE, field[1].start * SCALE:field[1].stop * SCALE] = 1.0
    moved = shift_image(box, *(np.asarray(shift) * SCALE), order=1, mode="constant")
    return moved.reshape(LR_SIDE, SCALE, LR_SIDE, SCALE).mean(axis=(1, 3))


def with_raised_field(frames: np.ndarray, masks: np.ndarray, shifts: np.ndarray, field: tuple[slice, slice],
                      changed_frames: np.ndarray) -> np.ndarray:
    """A copy of (T, h, w) `frames` with `field` raised by RELATIVE_CHANGE x the scene's level (the
    median of the clear pixels) in `changed_frames`, each frame seeing it at its true shift."""
    level = float(np.median(frames[masks]))
    changed = frames.copy()
    for t in changed_frames:
        changed[t] += RELATIVE_CHANGE * level * field_in_frame(field, shifts[t])
    return changed
