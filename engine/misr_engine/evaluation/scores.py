"""Held-out evaluation: every method runs the complete pipeline from the acquired frames.

Scenes are simulated from the held-out window of the Sentinel-2 bands (never seen in
training) with fixed seeds, so every run scores the same scenes. Scores are the Proba-V cPSNR
(``metrics.cpsnr``) on reflectance (digital numbers / 10000).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .baselines import BASELINES
from ..datasets.samples import build_samples
from ..datasets.sentinel2 import TEST_WINDOW, sentinel2_band_paths
from ..inference.tiled import super_resolve
from .metrics import best_alignment, cpsnr, cssim, gradient_stratified_psnr, lr_fidelity, spearman
from ..rasters.stack import Stack
from ..registration.stack import register_stack

Method = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (frames, masks) -> SR
S2_DATA_RANGE = 10000.0
LR_FIDELITY_PSF_SIGMA = 1.2  # HR px: Gaussian PSF used to re-degrade the SR for LR fidelity


@dataclass
class Scores:
    """Per-scene scores of one method (dB unless stated), and the time it took."""

    method: str
    cpsnr: list[float]
    seconds: float
    cssim: list[float] = field(default_factory=list)
    edge_psnr: list[float] = field(default_factory=list)  # top tercile of HR gradient
    flat_psnr: list[float] = field(default_factory=list)  # bottom tercile
    lr_fidelity: list[float] = field(default_factory=list)  # mean over the clear LR frames
    examples: list[np.ndarray] = field(default_factory=list)  # SR of the first scenes

    @property
    def mean(self) -> float:
        return float(np.mean(self.cpsnr))


def holdout_scenes(count: int = 24, lr_size: int = 64, n_frames: int = 9, seed: int = 11,
                   workers: int = 2) -> dict[str, np.ndarray]:
    """Unregistered held-out stacks (N,T,h,w) with their HR (N,3h,3w), from the Sentinel-2 sample."""
    return build_samples(sentinel2_band_paths(), TEST_WINDOW, count, lr_size, n_frames, seed,
                         workers=workers, featureless_keep=0.0, registered=False)


def network_method(model: torch.nn.Module, device: torch.device = torch.device("cpu")) -> Method:
    def run(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return super_resolve(Stack.in_memory(frames, masks), model, device)[0]
    return run


def evaluate(scenes: dict[str, np.ndarray], methods: dict[str, Method],
             data_range: float = S2_DATA_RANGE, full: bool = False, examples: int = 0) -> list[Scores]:
    """cPSNR of every method on every scene, with the time it took.

    With `full`, also cSSIM, PSNR on the most and least textured thirds of the pixels, and LR
    fidelity (the SR re-degraded onto every clear LR frame, with shifts estimated by
    registration); `examples` keeps the SR of the first scenes for figures.
    """
    shifts = [register_stack(f, m) for f, m in zip(scenes["frames"], scenes["masks"])] if full else []
    results = []
    for name, method in methods.items():
        scores = Scores(name, [], 0.0)
        hr_masks = scenes.get("hr_mask", [None] * len(scenes["hr"]))  # e.g. Proba-V's SM
        for index, (frames, masks, hr, hr_mask) in enumerate(zip(scenes["frames"], scenes["masks"],
                                                                  scenes["hr"], hr_masks)):
            started = time.perf_counter()
            sr = method(frames, masks)
            scores.seconds += time.perf_counter() - started
            sr, hr_unit = sr / data_range, hr / data_range
            scores.cpsnr.append(cpsnr(sr, hr_unit, hr_mask))
            if full:
                scores.cssim.append(cssim(sr, hr_unit, hr_mask))
                flat, _, edges = gradient_stratified_psnr(sr, hr_unit, hr_mask)
                scores.flat_psnr.append(float(flat))
                scores.edge_psnr.append(float(edges))
                fidelity = lr_fidelity(sr, frames / data_range, masks, shifts[index], LR_FIDELITY_PSF_SIGMA)
                scores.lr_fidelity.append(float(np.nanmean(fidelity)))
            if index < examples:
                scores.examples.append(sr * data_range)
        results.append(scores)
    return results


@dataclass
class UncertaintyScores:
    """How well the predicted Laplace scale tells where the SR is wrong (pooled pixels)."""

    abs_error: np.ndarray
    scale: np.ndarray
    spearman_pooled: float
    spearman_per_scene: list[float]


def uncertainty_scores(scenes: dict[str, np.ndarray], model: torch.nn.Module,
                       device: torch.device = torch.device("cpu"), border: int = 3) -> UncertaintyScores:
    """|error| of the cPSNR-aligned, bias-corrected SR against the predicted scale, per pixel."""
    errors, scales, per_scene = [], [], []
    hr_masks = scenes.get("hr_mask", [None] * len(scenes["hr"]))
    for frames, masks, hr, hr_mask in zip(scenes["frames"], scenes["masks"], scenes["hr"], hr_masks):
        sr, scale = super_resolve(Stack.in_memory(frames, masks), model, device)
        best = best_alignment(sr.astype(np.float64), hr.astype(np.float64), hr_mask, border)
        height, width = sr.shape
        cropped = scale[border:height - border, border:width - border]
        error = np.abs(best.error)[best.mask]
        errors.append(error)
        scales.append(cropped[best.mask])
        per_scene.append(spearman(cropped[best.mask], error))
    abs_error, scale = np.concatenate(errors), np.concatenate(scales)
    return UncertaintyScores(abs_error, scale, spearman(scale, abs_error), per_scene)


def standard_methods(model: torch.nn.Module | None) -> dict[str, Method]:
    methods: dict[str, Method] = dict(BASELINES)
    if model is not None:
        methods["piunet"] = network_method(model)
    return methods
