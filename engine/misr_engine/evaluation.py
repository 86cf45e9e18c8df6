"""Held-out evaluation: every method runs the complete pipeline from the acquired frames.

Scenes are simulated from the held-out window of the Sentinel-2 bands (never seen in
training) with fixed seeds, so every run scores the same scenes. Scores are the Proba-V cPSNR
(``metrics.cpsnr``) on reflectance (digital numbers / 10000).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .baselines import BASELINES
from .dataset import HOLDOUT_WINDOW, build_samples, sentinel2_band_paths
from .inference import super_resolve
from .metrics import cpsnr
from .raster_io import Stack

Method = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (frames, masks) -> SR
S2_DATA_RANGE = 10000.0


@dataclass
class Scores:
    method: str
    cpsnr: list[float]
    seconds: float

    @property
    def mean(self) -> float:
        return float(np.mean(self.cpsnr))


def holdout_scenes(count: int = 24, lr_size: int = 64, n_frames: int = 9, seed: int = 11,
                   workers: int = 2) -> dict[str, np.ndarray]:
    """Unregistered held-out stacks (N,T,h,w) with their HR (N,3h,3w), from the Sentinel-2 sample."""
    return build_samples(sentinel2_band_paths(), HOLDOUT_WINDOW, count, lr_size, n_frames, seed,
                         workers=workers, featureless_keep=0.0, registered=False)


def network_method(model: torch.nn.Module, device: torch.device = torch.device("cpu")) -> Method:
    def run(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return super_resolve(Stack.in_memory(frames, masks), model, device)[0]
    return run


def evaluate(scenes: dict[str, np.ndarray], methods: dict[str, Method],
             data_range: float = S2_DATA_RANGE) -> list[Scores]:
    """cPSNR of every method on every scene, with the CPU/GPU time it took."""
    results = []
    for name, method in methods.items():
        started, scores = time.perf_counter(), []
        for frames, masks, hr in zip(scenes["frames"], scenes["masks"], scenes["hr"]):
            scores.append(cpsnr(method(frames, masks) / data_range, hr / data_range))
        results.append(Scores(name, scores, time.perf_counter() - started))
    return results


def markdown_table(results: list[Scores], reference: str) -> str:
    """A Markdown table of mean cPSNR, margin over `reference`, wins and seconds per scene."""
    base = next(r for r in results if r.method == reference)
    lines = ["| method | cPSNR (dB) | vs " + reference + " (dB) | scenes better | s / scene |",
             "|---|---:|---:|---:|---:|"]
    for r in results:
        wins = int(np.sum(np.asarray(r.cpsnr) > np.asarray(base.cpsnr)))
        lines.append(f"| {r.method} | {r.mean:.2f} | {r.mean - base.mean:+.2f} | {wins}/{len(r.cpsnr)} "
                     f"| {r.seconds / len(r.cpsnr):.2f} |")
    return "\n".join(lines)


def standard_methods(model: torch.nn.Module | None) -> dict[str, Method]:
    methods: dict[str, Method] = dict(BASELINES)
    if model is not None:
        methods["piunet"] = network_method(model)
    return methods
