"""`misr make-dataset`: semi-simulated stacks from HR rasters, or real Proba-V-style scenes,
written as one `.npz` with its dataset card beside it."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import MisrError
from ..rasters.outputs import atomic_outputs, check_output_path
from .cards import arrays_of, card_path, probav_card, simulated_card, simulated_set, write_card
from .probav import DEFAULT_MAX_FRAMES, load_probav
from .samples import build_samples, save_samples

SIMULATION_DEFAULTS = {"split": "train", "count": 2400, "lr_size": 40, "frames_per_sample": 12, "seed": 1}
"""Defaults of the options that only simulated sets use (None until resolved, so that giving one
with a Proba-V folder can be refused)."""


@dataclass
class DatasetRequest:
    """The options of `misr make-dataset` (simulation options None = their default)."""

    output: str
    hr: list[str] | None = None
    probav: str | None = None
    split: str | None = None
    count: int | None = None
    lr_size: int | None = None
    frames_per_sample: int | None = None
    seed: int | None = None
    max_frames: int | None = None
    workers: int = 2
    raw: bool = False
    overwrite: bool = False


def make_dataset(request: DatasetRequest) -> str:
    """Build the samples, write the `.npz` and its card atomically; returns a one-line summary."""
    card_file = card_path(request.output)
    for path in (request.output, str(card_file)):
        check_output_path(path, request.hr or [], request.overwrite)
    build = _probav_dataset if request.probav else _simulated_dataset
    samples, card, summary = build(request)
    with atomic_outputs([request.output, str(card_file)], request.overwrite) as (temporary, card_temporary):
        with open(temporary, "wb") as handle:
            save_samples(handle, samples)
        write_card(card_temporary, card)
    return f"wrote {request.output} and {card_file.name}: {summary}"


def _simulated_dataset(request: DatasetRequest) -> tuple[dict[str, np.ndarray], str, str]:
    """Semi-simulated samples of the HR rasters, their card and a one-line summary."""
    if request.max_frames is not None:
        raise MisrError("--max-frames: only with --probav (simulated samples have --frames-per-sample frames)")
    for name, default in SIMULATION_DEFAULTS.items():
        if getattr(request, name) is None:
            setattr(request, name, default)
    spec = simulated_set(request.hr, request.split, request.count, request.lr_size, request.frames_per_sample,
                         request.seed, registered=not request.raw)
    samples = build_samples(list(spec.paths), spec.window, spec.count, spec.lr_size, spec.frames, spec.seed,
                            conditions=spec.conditions, workers=request.workers,
                            featureless_keep=spec.featureless_keep, registered=spec.registered)
    samples["registered"] = np.array(spec.registered)
    card = simulated_card(spec, arrays_of(samples), os.path.basename(request.output), request.output)
    return samples, card, (f"{request.count} samples of {request.frames_per_sample} frames, "
                           f"{request.lr_size}x{request.lr_size} LR")


def _probav_dataset(request: DatasetRequest) -> tuple[dict[str, np.ndarray], str, str]:
    """The scenes of a Proba-V-style folder, their card and a one-line summary."""
    given = [name for name in SIMULATION_DEFAULTS if getattr(request, name) is not None]
    if given:
        raise MisrError(f"--{given[0].replace('_', '-')}: not used with --probav (it reads real scenes; "
                        "use --max-frames to bound the frames per scene)")
    max_frames = DEFAULT_MAX_FRAMES if request.max_frames is None else request.max_frames
    samples = load_probav(request.probav, max_frames, request.workers, registered=not request.raw)
    samples["registered"] = np.array(not request.raw)
    frames_per_scene = samples["masks"].any(axis=(2, 3)).sum(axis=1)
    card = probav_card(request.probav, arrays_of(samples), frames_per_scene, max_frames, not request.raw,
                       float(samples["hr_mask"].mean()), os.path.basename(request.output))
    n, t, h, w = samples["frames"].shape
    return samples, card, f"{n} Proba-V scenes of {t} frames, {w}x{h} LR"
