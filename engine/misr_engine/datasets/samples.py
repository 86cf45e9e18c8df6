"""Semi-simulated stacks from real HR rasters (Sentinel-2 bands), for training and evaluation.

Crops come from one window of the bands (``sentinel2``: train, validation and test windows are
disjoint). Every sample is degraded with ``simulate.degrade``. Registered samples (training and
validation) are then prepared exactly as the engine prepares a scene: registered onto the
frames' central position by whole pixels (``registration.stack.register``) and mapped onto their
median radiometry (``registration.radiometry``); their HR target is what the SR should be pixel
for pixel (``simulate.reference_target``: the clear-temporal-mean surface on that grid, in that
radiometry), so that training needs neither a shift search nor a brightness correction and
holds the output's level. Unregistered samples (evaluation of whole pipelines) keep the frames
as acquired; their HR is the mean surface in the frames' median radiometry (the cPSNR searches
the shift and removes what is left of the brightness difference). The arrays are stored in one ``.npz`` file.
"""

from __future__ import annotations

import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import SCALE
from ..errors import MisrError
from ..inference.normalisation import Normalisation
from ..registration.prepare import prepare_stack
from ..registration.stack import subpixel_phase
from .simulate import (
    Degradation,
    central_target,
    degrade,
    mean_state,
    output_frame,
    reference_change,
    reference_target,
    with_contrast,
)

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
    hr_with_margin = with_contrast(hr_with_margin, spec.conditions, rng)
    stack = degrade(hr_with_margin, spec.n_frames, rng, spec.conditions, MARGIN)
    if not spec.register:  # the level of the frames' central radiometry (the engine's output)
        state = mean_state(hr_with_margin, stack)[MARGIN:-MARGIN, MARGIN:-MARGIN]
        hr = central_target(state, stack)
        change = stack.change[MARGIN:-MARGIN, MARGIN:-MARGIN]
        return stack.frames, stack.masks, hr.astype(np.float32), stack.shifts, change, stack.changed
    prepared = prepare_stack(stack.frames, stack.masks)
    reference, radiometry = prepared.reference, prepared.radiometry
    output = output_frame(stack, reference, prepared.shifts[reference], radiometry.gains[reference],
                          radiometry.offsets[reference])
    unchanged = replace(stack, changed=np.zeros_like(stack.changed))
    return (prepared.frames, prepared.masks, reference_target(hr_with_margin, unchanged, output),
            subpixel_phase(prepared.shifts), reference_change(stack, output), stack.changed)


def robust_statistics(values: np.ndarray) -> tuple[float, float]:
    """The engine's scene normalisation (``Normalisation.of_values``), here of a whole band window."""
    norm = Normalisation.of_values(np.asarray(values, np.float64).ravel()[::7])
    return norm.centre, norm.spread


def read_image_band(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A band's values (float32) and where they are image: finite, not the declared nodata and, in
    an integer raster that declares none, not 0 (the fill around Landsat and Sentinel-2 footprints)."""
    from ..rasters.bands import open_band  # GDAL: only to build samples (training reads .npz files)

    source = open_band(path)
    values = source.read()
    valid = np.isfinite(values)
    if source.nodata is not None:
        valid &= values != source.nodata
    elif source.value_range is not None:
        valid &= values != 0
    return values, valid


def crop_corners(valid: np.ndarray, size: int) -> np.ndarray:
    """Where a `size` x `size` crop of only `valid` pixels may start (row, column): a summed-area
    table of the pixels that are not image."""
    table = np.pad(np.cumsum(np.cumsum(~valid, axis=0, dtype=np.int64), axis=1), ((1, 0), (1, 0)))
    return (table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]) == 0


def build_samples(paths: list[str], window: tuple[tuple[int, int | None], tuple[int, int | None]],
                  count: int, lr_size: int, n_frames: int, seed: int,
                  conditions: Degradation = Degradation(), workers: int = 2,
                  featureless_keep: float = FEATURELESS_KEEP, registered: bool = True) -> dict[str, np.ndarray]:
    """`count` random crops from a (rows, columns) window of the HR rasters, degraded and registered.

    With `registered` False the frames stay as acquired (for evaluating complete pipelines).
    Returns frames (N,T,h,w), masks (N,T,h,w), hr (N,3h,3w) (see the module's docstring),
    per-sample normalisation (centre, spread) computed on the whole band window as the engine
    computes it per scene, `origins` (N,2): the (row, column) of every HR crop's corner
    (margin included) in the rasters, and `shifts` (N,T,2): the sub-pixel phase of every
    registered frame (what the network is told; then `aligned` is True: `hr` is on the reference
    frame's grid), or, unregistered, `true_shifts`: the simulated misregistration (LR px), and
    `change` (N,3h,3w): the surface change that the frames showing it saw (0 where none), on
    the HR grid.
    """
    rng = np.random.default_rng(seed)
    (r0, r1), (c0, c1) = window
    read = [read_image_band(p) for p in paths]
    bands, valid = [values[r0:r1, c0:c1] for values, _ in read], [image[r0:r1, c0:c1] for _, image in read]
    size = lr_size * SCALE + 2 * MARGIN
    corners = [crop_corners(image, size)[:-1, :-1] for image in valid]  # the corners a draw below can reach
    usable = [index for index, fits in enumerate(corners) if fits.any()]
    band_statistics = {index: robust_statistics(bands[index][valid[index]]) for index in usable}
    if not usable:
        raise MisrError(f"{', '.join(paths)}: no {size} x {size} px window of image pixels (nodata, fill 0 or "
                        "NaN elsewhere): give a larger raster or a smaller --lr-size")
    jobs, stats, origins, tries = [], [], [], 0
    while len(jobs) < count:
        tries += 1
        if tries > 1000 * count + 10000:
            raise MisrError(f"{', '.join(paths)}: only {len(jobs)} of {count} crops found among their image "
                            "pixels (mostly nodata or featureless): give a smaller --count or --lr-size")
        which = usable[rng.integers(len(usable))]
        band = bands[which]
        y, x = rng.integers(0, band.shape[0] - size), rng.integers(0, band.shape[1] - size)
        if not corners[which][y, x]:  # it touches nodata or fill
            continue
        crop = band[y:y + size, x:x + size]
        if crop.std() < MIN_TEXTURE * crop.mean() and rng.random() >= featureless_keep:
            continue
        index = len(jobs)
        crop = np.rot90(crop, rng.integers(4)) if rng.random() < 0.5 else crop
        spec = SampleSpec(lr_size, n_frames, seed * 100003 + index, conditions, registered)
        jobs.append((np.ascontiguousarray(crop), spec))
        stats.append(band_statistics[which])
        origins.append((r0 + y, c0 + x))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_simulate_one, jobs, chunksize=16))
    frames, masks, hr, shifts, change, changed = (np.stack(parts) for parts in zip(*results))
    samples = {"frames": frames.astype(np.float32), "masks": masks, "hr": hr.astype(np.float32),
               "norm": np.asarray(stats, np.float32), "origins": np.asarray(origins, np.int32),
               "shifts" if registered else "true_shifts": shifts.astype(np.float32)}
    if not registered:  # where the surface changed, for the evaluation inside and away from it
        samples["change"] = change.astype(np.float32)
    else:
        samples["aligned"] = np.array(True)
        if changed.any():  # the change on the output grid, added per subset of frames (training)
            samples.update({"change": change.astype(np.float32), "changed": changed})
    return samples


def save_samples(path: str | Path, samples: dict[str, np.ndarray]) -> None:
    np.savez(path, **samples)


def load_samples(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays of a samples `.npz`, float16 ones (compact copies for a device) as float32; a
    one-line MisrError if it is not a readable `.npz` or lacks one of the `required` arrays."""
    try:
        with np.load(path) as data:
            arrays = {key: data[key].astype(np.float32) if data[key].dtype == np.float16 else data[key]
                      for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise MisrError(f"{path}: not a samples file made by `misr make-dataset` (not a readable .npz)") from None
    missing = [key for key in required if key not in arrays]
    if missing:
        raise MisrError(f"{path}: not a samples file made by `misr make-dataset` (no {', '.join(missing)})")
    return arrays

