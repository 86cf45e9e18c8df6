"""Evidence for adaptation (issue 15): supervised and self-supervised weights, with and without
test-time fine-tuning, against the classical pipelines, on data unlike the training data.

Sets are unregistered stacks (every method runs the whole pipeline) simulated from a window of
the Sentinel-2 sample (``datasets.sentinel2``): validation scenes for every choice (in
distribution and out of the training ranges; never the unseen bands, for which the 10 m bands
averaged to 20 m pixels stand in: `coarse-bands`), test scenes for the report. Scores are the
Proba-V cPSNR on reflectance; differences between methods come with a 95% paired bootstrap
interval over scenes. Results are appended scene by scene to a JSON-lines
file, so a long run resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..datasets.samples import build_samples
from ..datasets.sentinel2 import (NATIVE_PIXEL_M, S2_BANDS, SPLITS, UNSEEN_BANDS, averaged_band_paths,
                                  scaled_window, sentinel2_band_paths)
from ..datasets.simulate import LOW_CONTRAST, OUT_OF_RANGE, SENTINEL2, STRONG_CHANGE, SURFACE_CHANGE, Degradation
from .metrics import cpsnr
from .statistics import bootstrap_mean

UNSEEN_PIXEL_M = 20.0  # the unseen bands are the 20 m ones
DATA_RANGE = 10000.0


@dataclass(frozen=True)
class EvidenceSet:
    """Scenes of `bands` degraded with `conditions`; `unseen` sets are never used for a choice."""

    bands: tuple[str, ...]
    conditions: Degradation
    pixel_m: float
    description: str

    @property
    def unseen(self) -> bool:
        return self.bands == UNSEEN_BANDS

    @property
    def averaged(self) -> bool:
        """10 m bands on coarser pixels: read through `averaged_band_paths`."""
        return self.bands == S2_BANDS and self.pixel_m != NATIVE_PIXEL_M


EVIDENCE_SETS: dict[str, EvidenceSet] = {
    "in-distribution": EvidenceSet(S2_BANDS, SENTINEL2, NATIVE_PIXEL_M,
                                   "10 m bands, Sentinel-2-like degradations (inside every training range: "
                                   "the first weights' and `simulate.Degradation()`)"),
    "out-of-range": EvidenceSet(S2_BANDS, OUT_OF_RANGE, NATIVE_PIXEL_M,
                                "10 m bands, blur sigma 2.4-3.2 HR px with strong halos, noise 2-4%, shifts up to 2.5 px"),
    "unseen-bands": EvidenceSet(UNSEEN_BANDS, SENTINEL2, UNSEEN_PIXEL_M,
                                "20 m bands (red edge, narrow NIR, SWIR), Sentinel-2-like degradations"),
    "unseen-bands-out-of-range": EvidenceSet(UNSEEN_BANDS, OUT_OF_RANGE, UNSEEN_PIXEL_M,
                                             "20 m bands, out-of-range degradations"),
    "coarse-bands": EvidenceSet(S2_BANDS, SENTINEL2, UNSEEN_PIXEL_M,
                                "10 m bands averaged to 20 m pixels, Sentinel-2-like degradations: coarser "
                                "content per pixel, a validation stand-in for the unseen 20 m bands"),
    "coarse-bands-out-of-range": EvidenceSet(S2_BANDS, OUT_OF_RANGE, UNSEEN_PIXEL_M,
                                             "10 m bands averaged to 20 m pixels, out-of-range degradations"),
    "surface-change": EvidenceSet(S2_BANDS, SURFACE_CHANGE, NATIVE_PIXEL_M,
                                  "10 m bands, a field brighter or darker in some frames of every stack (the "
                                  "target: the clear-temporal-mean surface), training ranges otherwise"),
    "low-contrast": EvidenceSet(S2_BANDS, LOW_CONTRAST, NATIVE_PIXEL_M,
                                "10 m bands, a tenth to a third of the scene's contrast, noise still relative to "
                                "the level (training ranges otherwise)"),
    "strong-change": EvidenceSet(S2_BANDS, STRONG_CHANGE, NATIVE_PIXEL_M,
                                 "10 m bands, a field 0.8-1.5 times the level brighter or darker in 30-50% of "
                                 "the frames (beyond the training range)"),
}
ADAPTATION_SETS = ("in-distribution", "out-of-range", "unseen-bands", "unseen-bands-out-of-range")
"""The sets of the adaptation evidence (issue 15's table)."""


def evidence_scenes(name: str, split: str, count: int, lr_size: int = 48, n_frames: int = 9,
                    seed: int = 41, workers: int = 1, skip: int = 0) -> dict[str, np.ndarray]:
    """`count` unregistered scenes of set `name` from the `split` window (validation or test):
    scenes `skip` to `skip + count - 1` of the draw, so that a later study takes fresh scenes; their
    numbers in the draw under "scene"."""
    spec = EVIDENCE_SETS[name]
    if split != "test" and spec.unseen:
        raise ValueError(f"{name}: the unseen bands are for the test report only, not for choices")
    window = scaled_window(SPLITS[split], spec.pixel_m)
    paths = averaged_band_paths(spec.bands, spec.pixel_m) if spec.averaged else sentinel2_band_paths(spec.bands)
    drawn = build_samples(paths, window, skip + count, lr_size, n_frames, seed,
                          conditions=spec.conditions, workers=workers, featureless_keep=0.0, registered=False)
    scenes = {key: value[skip:] for key, value in drawn.items()}  # unregistered: every array is per scene
    scenes["scene"] = np.arange(skip, skip + count)
    return scenes


def scene_score(sr: np.ndarray, hr: np.ndarray) -> float:
    """cPSNR (dB) of an SR against its HR, both in digital numbers, on reflectance."""
    return cpsnr(sr / DATA_RANGE, hr / DATA_RANGE)


def paired_interval(a: Iterable[float], b: Iterable[float]) -> tuple[float, float, float]:
    """Mean of a - b over scenes and its 95% paired bootstrap interval (``statistics``; NaN
    bounds with fewer than two scenes)."""
    interval = bootstrap_mean(np.asarray(list(a), np.float64) - np.asarray(list(b), np.float64))
    return interval.mean, interval.low, interval.high


def mean_interval(values: Iterable[float]) -> tuple[float, float, float]:
    """Mean and its 95% bootstrap interval over scenes."""
    interval = bootstrap_mean(list(values))
    return interval.mean, interval.low, interval.high


class Results:
    """Per-scene scores in a JSON-lines file: {"set", "method", "scene", "cpsnr", "seconds", ...}."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows = [json.loads(line) for line in self.path.read_text().splitlines()] if self.path.exists() else []

    def has(self, set_name: str, method: str, scene: int) -> bool:
        return any(r["set"] == set_name and r["method"] == method and r["scene"] == scene for r in self.rows)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def scores(self, set_name: str, method: str) -> dict[int, float]:
        return {r["scene"]: r["cpsnr"] for r in self.rows if r["set"] == set_name and r["method"] == method}


Method = Callable[[np.ndarray, np.ndarray], np.ndarray]


def run_methods(results: Results, set_name: str, scenes: dict[str, np.ndarray], methods: dict[str, Method],
                log: Callable[[str], None] = print) -> None:
    """Score every method on every scene not yet in `results` (resumable)."""
    for name, method in methods.items():
        for index, (frames, masks, hr) in enumerate(zip(scenes["frames"], scenes["masks"], scenes["hr"])):
            if results.has(set_name, name, index):
                continue
            started = time.perf_counter()
            sr = method(frames, masks)
            seconds = time.perf_counter() - started
            results.add({"set": set_name, "method": name, "scene": index, "cpsnr": scene_score(sr, hr),
                         "seconds": round(seconds, 2)})
            log(f"{set_name} {name} scene {index}: {results.rows[-1]['cpsnr']:.3f} dB, {seconds:.1f} s")


def table(results: Results, set_name: str, methods: list[str], reference: str) -> list[dict]:
    """Per method: mean cPSNR with its interval, and the paired difference to `reference` with
    its interval, over the scenes every listed method has."""
    per_method = {m: results.scores(set_name, m) for m in methods}
    common = sorted(set.intersection(*(set(s) for s in per_method.values()))) if per_method else []
    rows = []
    for method in methods:
        values = [per_method[method][i] for i in common]
        ref = [per_method[reference][i] for i in common]
        mean, low, high = mean_interval(values)
        diff, dlow, dhigh = paired_interval(values, ref)
        rows.append({"method": method, "scenes": len(common), "cpsnr": mean, "cpsnr_low": low, "cpsnr_high": high,
                     "vs_reference": diff, "vs_low": dlow, "vs_high": dhigh,
                     "better": int(sum(v > r for v, r in zip(values, ref)))})
    return rows
