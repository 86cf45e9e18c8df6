"""Scenes of scripts/change_away_study.py's draw, for tests of what a changed field moves."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from misr_engine import SCALE
from misr_engine.imaging.resample import shift_image

FIELD_SIDE = 17  # LR px: the change study's field
SCENE_43 = (43, (5, 33), [0, 4, 5, 8])  # draw index, field's corner (LR px), changed frames: the reference 5 among them
SCENE_62 = (62, (41, 61), [2, 3, 4, 6])  # the reference, 5, not changed; the change makes it 0
SCENE_150 = (150, (26, 1), [1, 4, 6, 8])  # the reference, 5, not changed


def change_study_scene(index: int, corner: tuple[int, int], changed_frames: list[int]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scene `index` of scripts/change_away_study.py's draw (real Sentinel-2 10 m bands, validation
    window, 9 frames of 80 x 80 LR): its frames, masks, true shifts, and the frames with its field
    (FIELD_SIDE LR px from `corner`) raised by 1.4 x the level in `changed_frames`, on the ground
    (moved with each frame's shift)."""
    from misr_engine.datasets.samples import build_samples
    from misr_engine.datasets.sentinel2 import VALIDATION_WINDOW, sentinel2_band_paths
    from misr_engine.datasets.simulate import Degradation

    drawn = build_samples(sentinel2_band_paths(("B02", "B03", "B04", "B08")), VALIDATION_WINDOW, index + 1, 80, 9,
                          seed=7, conditions=replace(Degradation(), change_probability=0.0), workers=1,
                          featureless_keep=0.0, registered=False)
    frames, masks, true = drawn["frames"][index], drawn["masks"][index], drawn["true_shifts"][index]
    (row, col), box = corner, np.zeros((80 * SCALE, 80 * SCALE))
    box[row * SCALE:(row + FIELD_SIDE) * SCALE, col * SCALE:(col + FIELD_SIDE) * SCALE] = 1.0
    changed = frames.copy()
    for t in changed_frames:
        field = shift_image(box, *(true[t] * SCALE), order=1, mode="constant").reshape(80, SCALE, 80, SCALE)
        changed[t] += 1.4 * float(np.median(frames[masks])) * field.mean(axis=(1, 3))
    return frames, masks, true, changed
