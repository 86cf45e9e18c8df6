"""Scenes of scripts/change_away_study.py's draw, for tests of what a changed field moves."""

from __future__ import annotations

import numpy as np
from misr_engine.evaluation.change_study import FIELD_SIDE, study_scenes, with_raised_field

SCENE_43 = (43, (5, 33), [0, 4, 5, 8])  # draw index, field's corner (LR px), changed frames: the reference 5 among them
SCENE_62 = (62, (41, 61), [2, 3, 4, 6])  # the reference, 5, not changed; the change makes it 0
SCENE_150 = (150, (26, 1), [1, 4, 6, 8])  # the reference, 5, not changed


def change_study_scene(index: int, corner: tuple[int, int], changed_frames: list[int]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scene `index` of the change study's draw (``evaluation.change_study``: real Sentinel-2 10 m
    bands, validation window, 9 frames of 80 x 80 LR): its frames, masks, true shifts, and the
    frames with its field (FIELD_SIDE LR px from `corner`) raised in `changed_frames`."""
    drawn = study_scenes(index + 1)
    frames, masks, true = drawn["frames"][index], drawn["masks"][index], drawn["true_shifts"][index]
    field = (slice(corner[0], corner[0] + FIELD_SIDE), slice(corner[1], corner[1] + FIELD_SIDE))
    return frames, masks, true, with_raised_field(frames, masks, true, field, changed_frames)
