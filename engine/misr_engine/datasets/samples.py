"""Semi-simulated training and validation stacks from real HR rasters (Sentinel-2 10 m bands).

Train and validation crops come from disjoint column ranges of the same bands, separated by a
gap, so that no validation texture is seen in training. Every sample is degraded with
``simulate.degrade`` and registered with ``preprocess.register`` exactly as the engine does at
inference; the arrays are stored in one ``.npz`` file.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import SCALE
from ..registration.stack import register, subpixel_phase
from ..rasters.bands import read_band
from .simulate import Degradation, degrade

MARGIN = 12  # HR pixels cropped away around each simulated sample (Fourier wrap-around)
MIN_TEXTURE = 0.05  # std / mean of an HR crop below which it counts as featureless (open water)
FEATURELESS_KEEP = 0.25  # fraction of featureless crops kept in training (none in held-out sets)


@dataclass(frozen=True)
class SampleSpec:
    lr_size: int
    n_frames: int
    seed: int
    conditions: Degradation
    register: bool = True


def _simulate_one(args: tuple[np.ndarray, SampleSpec]) -> tuple[np.ndarray, ...]:
    hr_with_margin, spec = args
    rng = np.random.default_rng(spec.seed)
    stack = degrade(hr_with_margin, spec.n_frames, rng, spec.conditions, MARGIN)
    if not spec.register:
        return stack.frames, stack.masks, stack.hr, stack.shifts
    frames, masks, shifts = register(stack.frames, stack.masks)
    return frames, masks, stack.hr, subpixel_phase(shifts)


def build_samples(paths: list[str], window: tuple[tuple[int, int | None], tuple[int, int | None]],
                  count: int, lr_size: int, n_frames: int, seed: int,
                  conditions: Degradation = Degradation(), workers: int = 2,
                  featureless_keep: float = FEATURELESS_KEEP, registered: bool = True) -> dict[str, np.ndarray]:
    """`count` random crops from a (rows, columns) window of the HR rasters, degraded and registered.

    With `registered` False the frames stay as acquired (for evaluating complete pipelines).
    Returns frames (N,T,h,w), masks (N,T,h,w), hr (N,3h,3w), per-sample normalisation
    (centre, spread) computed on the whole band region, as the engine computes it per scene,
    and `shifts` (N,T,2): the sub-pixel phase of every registered frame (what the network is
    told), or, unregistered, `true_shifts`: the simulated misregistration (LR px).
    """
    rng = np.random.default_rng(seed)
    (r0, r1), (c0, c1) = window
    bands = [read_band(p)[0][r0:r1, c0:c1] for p in paths]
    size = lr_size * SCALE + 2 * MARGIN
    jobs, stats = [], []
    while len(jobs) < count:
        band = bands[rng.integers(len(bands))]
        y, x = rng.integers(0, band.shape[0] - size), rng.integers(0, band.shape[1] - size)
        crop = band[y:y + size, x:x + size]
        if crop.std() < MIN_TEXTURE * crop.mean() and rng.random() >= featureless_keep:
            continue
        index = len(jobs)
        crop = np.rot90(crop, rng.integers(4)) if rng.random() < 0.5 else crop
        jobs.append((np.ascontiguousarray(crop), SampleSpec(lr_size, n_frames, seed * 100003 + index, conditions, registered)))
        stats.append((float(band.mean()), float(band.std())))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_simulate_one, jobs, chunksize=16))
    frames, masks, hr, shifts = (np.stack(parts) for parts in zip(*results))
    return {"frames": frames.astype(np.float32), "masks": masks, "hr": hr.astype(np.float32),
            "norm": np.asarray(stats, np.float32),
            "shifts" if registered else "true_shifts": shifts.astype(np.float32)}


def save_samples(path: str | Path, samples: dict[str, np.ndarray]) -> None:
    np.savez(path, **samples)


def load_samples(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}

