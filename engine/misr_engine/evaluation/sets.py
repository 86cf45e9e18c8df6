"""The evaluation sets of `misr evaluate`: what every reported number is measured on.

Every simulated set is drawn with a fixed seed from one window of the Sentinel-2 bands
(``datasets.sentinel2``), so every run scores the same scenes, and the first N scenes of a set
do not depend on how many are drawn. `validation` is the set every choice (losses, checkpoints,
options, defaults) is made on; the others come from the test window and are for reporting only.
Scenes are left as acquired (unregistered, cloudy): every method runs its whole pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from ..datasets.samples import build_samples, load_samples
from ..datasets.sentinel2 import (S2_BANDS, TEST_WINDOW, UNSEEN_BANDS, VALIDATION_WINDOW, Window, scaled_window,
                                  sentinel2_band_paths)
from ..datasets.simulate import (
    BLURRED_SENSOR,
    LOW_CONTRAST,
    OUT_OF_RANGE,
    SHARP_SENSOR,
    SURFACE_CHANGE,
    Degradation,
)
from ..errors import MisrError
from ..rasters.selection import DEFAULT_MAX_FRAMES
from ..resources import sample_dir, sample_paths

Scenes = dict[str, np.ndarray]
"""frames, masks (N, T, h, w), hr (N, 3h, 3w); optionally hr_mask, change (N, 3h, 3w), origins (N, 2)."""


class EvaluationSet(Protocol):
    name: str
    description: str

    def scenes(self, count: int | None = None, workers: int = 2) -> Scenes:
        """The set's scenes (its first `count` ones, if given)."""


@dataclass(frozen=True)
class SimulatedSet:
    """Scenes simulated (``simulate.degrade``) from random crops of one window of some bands."""

    name: str
    purpose: str
    bands: tuple[str, ...]
    window: Window  # in 10 m pixels
    pixel_m: float  # pixel size of the bands
    conditions: Degradation
    frames: int
    lr_size: int
    count: int
    seed: int

    @property
    def description(self) -> str:
        where = "validation window" if self.window == VALIDATION_WINDOW else "test window"
        return (f"{self.purpose}: {' '.join(self.bands)} ({self.pixel_m:g} m), {where}, {self.frames} frames, "
                f"{self.lr_size} x {self.lr_size} LR")

    def with_frames(self, frames: int) -> SimulatedSet:
        """The same set drawn with `frames` frames per scene (``misr evaluate --frames``)."""
        return replace(self, frames=frames)

    @property
    def band_window(self) -> Window:
        """The window in the bands' own pixels."""
        return scaled_window(self.window, self.pixel_m)

    def scenes(self, count: int | None = None, workers: int = 2) -> Scenes:
        return build_samples(sentinel2_band_paths(self.bands), self.band_window, count or self.count, self.lr_size,
                             self.frames, self.seed, self.conditions, workers, featureless_keep=0.0,
                             registered=False)


@dataclass(frozen=True)
class SampleSet:
    """The embedded real sample scene (fully cloudy frames dropped, as the engine drops them)."""

    name: str = "sample"
    description: str = ("the embedded sample scene: Sentinel-2 B08 frames with cloud masks (8 of 9 used; "
                        "one is overcast) and the real 10 m image as reference, 140 x 140 LR")

    def scenes(self, count: int | None = None, workers: int = 2) -> Scenes:
        from ..rasters.bands import read_band  # GDAL: the sample's files (the other sets need none here)
        from ..rasters.stack import read_stack

        stack = read_stack(*sample_paths())
        hr = read_band(str(sample_dir() / "reference_hr.tif"))[0]
        return {"frames": stack.frames[None].astype(np.float32), "masks": stack.masks[None],
                "hr": hr[None].astype(np.float32)}


@dataclass(frozen=True)
class FileSet:
    """Scenes of an `.npz` written by `misr make-dataset --raw` (e.g. real Proba-V scenes)."""

    path: str
    name: str = "data"

    @property
    def description(self) -> str:
        return f"the scenes of {self.path} (`misr make-dataset --raw`)"

    def scenes(self, count: int | None = None, workers: int = 2) -> Scenes:
        if not os.path.isfile(self.path):
            raise MisrError(f"{self.path}: file not found")
        stacks = load_samples(self.path)
        if stacks.get("registered", np.array(True)).item():
            raise MisrError(f"{self.path}: frames are pre-registered (training data); "
                            "make evaluation data with `misr make-dataset --raw`")
        return {key: value[:count] if count and np.ndim(value) else value for key, value in stacks.items()}


def _simulated(name: str, purpose: str, bands: tuple[str, ...], window: Window, conditions: Degradation,
               frames: int, lr_size: int, seed: int, pixel_m: float = 10.0, count: int = 32) -> SimulatedSet:
    return SimulatedSet(name, purpose, bands, window, pixel_m, conditions, frames, lr_size, count, seed)


def _out_of_range_purpose(c: Degradation = OUT_OF_RANGE) -> str:
    return (f"outside every training range: PSF sigma {c.psf_sigma[0]:g}-{c.psf_sigma[1]:g} HR px with "
            f"halos, noise {100 * c.noise_fraction[0]:g}-{100 * c.noise_fraction[1]:g}% of the level, shifts "
            f"up to {c.max_shift_lr:g} LR px, fewer frames")


SETS: dict[str, EvaluationSet] = {s.name: s for s in (
    _simulated("test", "in-distribution test (training degradation ranges)", S2_BANDS, TEST_WINDOW,
               Degradation(), 9, 64, seed=11),
    _simulated("unseen_bands", "unseen bands, never used in training or any choice (training ranges)",
               UNSEEN_BANDS, TEST_WINDOW, Degradation(), 9, 48, seed=13, pixel_m=20.0),
    _simulated("out_of_range", _out_of_range_purpose(), S2_BANDS, TEST_WINDOW, OUT_OF_RANGE, 4, 64, seed=14),
    _simulated("surface_change", "surface change: a field brighter or darker in some frames of every stack, "
               "the target is the clear-temporal-mean surface (training ranges otherwise)", S2_BANDS, TEST_WINDOW,
               SURFACE_CHANGE, 9, 64, seed=15),
    _simulated("low_contrast", f"low contrast: {LOW_CONTRAST.contrast[0]:g}-{LOW_CONTRAST.contrast[1]:g} of the "
               "scene's contrast, noise still relative to the level (training ranges otherwise)", S2_BANDS,
               TEST_WINDOW, LOW_CONTRAST, 9, 64, seed=17),
    _simulated("sharp_sensor", "a sharp sensor: every frame blurred by its pixels alone, sharper than any "
               "training stack (training ranges otherwise)", S2_BANDS, TEST_WINDOW, SHARP_SENSOR, 9, 64, seed=18),
    _simulated("blurred_sensor", f"a blurry sensor: every frame blurred by {BLURRED_SENSOR.psf_sigma[0]:g}-"
               f"{BLURRED_SENSOR.psf_sigma[1]:g} HR px, the top of the training range (training ranges otherwise)",
               S2_BANDS, TEST_WINDOW, BLURRED_SENSOR, 9, 64, seed=19),
    SampleSet(),
    _simulated("validation", "validation, the set every choice is made on (training ranges)", S2_BANDS,
               VALIDATION_WINDOW, Degradation(), 9, 64, seed=12),
)}
"""Every named set, in report order."""
REPORTED = ("test", "unseen_bands", "out_of_range", "surface_change", "low_contrast", "sharp_sensor", "blurred_sensor",
            "sample")
"""The sets `misr evaluate` scores by default: test-window sets and the real sample, never validation."""


FRAME_COUNTS = (2, DEFAULT_MAX_FRAMES)
"""The frames per scene a simulated set may be drawn with (`select_sets`): from the fewest that make
a multi-image stack to the most the engine fuses (the training draws 2-15 too)."""


def select_sets(names: list[str] | None, data: str | None = None, frames: int | None = None) -> list[EvaluationSet]:
    """The sets named (default: `REPORTED`, or only the `data` file's set when one is given),
    plus the `data` file's set; the simulated ones drawn with `frames` frames per scene where given
    (the sample and the data file keep theirs)."""
    if frames is not None and not FRAME_COUNTS[0] <= frames <= FRAME_COUNTS[1]:
        raise MisrError(f"--frames: {frames} frames per scene; give {FRAME_COUNTS[0]} to {FRAME_COUNTS[1]}")
    if names is None:
        names = [] if data else list(REPORTED)
    unknown = [name for name in names if name not in SETS]
    if unknown:
        raise MisrError(f"--sets: unknown set {unknown[0]!r} (choose from {', '.join(SETS)})")
    chosen: list[EvaluationSet] = [SETS[name] for name in dict.fromkeys(names)] + ([FileSet(data)] if data else [])
    if frames is not None:
        chosen = [s.with_frames(frames) if isinstance(s, SimulatedSet) else s for s in chosen]
    if not chosen:
        raise MisrError(f"--sets: no set given (choose from {', '.join(SETS)})")
    return chosen
