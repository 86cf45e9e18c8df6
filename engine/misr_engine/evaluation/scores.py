"""Scoring methods scene by scene: every method runs its complete pipeline from the acquired frames.

Scores are the Proba-V cPSNR (``metrics.cpsnr``) on reflectance (digital numbers / 10000), the
level's error that cPSNR's bias correction leaves out (``metrics.level_error``) and, with `full`,
cSSIM, gradient-stratified PSNR and LR fidelity. A network's predicted scale is scored against
its |error| (Spearman, calibration, sparsification); on scenes with a surface change, the error
inside the changed field is told apart from the error away from it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy import ndimage

from .baselines import BASELINES, Prepared, engine_prepared
from ..inference.tiled import super_resolve
from .metrics import (
    Alignment,
    best_alignment,
    cpsnr,
    cssim,
    gradient_stratified_psnr,
    level_error,
    lr_fidelity,
    spearman,
)
from ..rasters.in_memory import Stack

Method = Callable[[np.ndarray, np.ndarray], "np.ndarray | tuple[np.ndarray, np.ndarray]"]
"""(frames, masks) -> SR, or (SR, predicted Laplace scale) for a network."""
S2_DATA_RANGE = 10000.0
LR_FIDELITY_PSF_SIGMA = 1.2  # HR px: Gaussian PSF used to re-degrade the SR for LR fidelity
BORDER = 3  # HR px: the cPSNR border
CHANGE_INSIDE = 0.5
"""A pixel is inside a changed field where |change| is at least this share of the field's peak."""
CHANGE_AWAY_PX = 6
"""HR px: pixels this far from any trace of the change (|change| > 1% of its peak) are 'away' from it."""


@dataclass
class UncertaintyScores:
    """How well a network's predicted scale tells where its SR is wrong (|error| after the cPSNR
    alignment and bias correction): pooled over the pixels of every scene, and per scene."""

    abs_error: np.ndarray
    scale: np.ndarray
    spearman_per_scene: list[float]

    @property
    def spearman_pooled(self) -> float:
        return spearman(self.scale, self.abs_error)


@dataclass
class ChangeScores:
    """Per scene, in digital numbers after the cPSNR alignment: RMSE inside the changed field and
    away from it, the mean error inside signed along the change (negative: the SR shows less
    change than the target), and the scene's mean level."""

    inside_rmse: list[float] = field(default_factory=list)
    away_rmse: list[float] = field(default_factory=list)
    inside_signed: list[float] = field(default_factory=list)
    level: list[float] = field(default_factory=list)

    FIELDS = ("inside_rmse", "away_rmse", "inside_signed", "level")

    def lists(self) -> list[list[float]]:
        return [getattr(self, name) for name in self.FIELDS]


@dataclass
class Scores:
    """Per-scene scores of one method (dB unless stated) and the seconds each scene took."""

    method: str
    cpsnr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    level_error: list[float] = field(default_factory=list)  # % of the target's level (``metrics.level_error``)
    cssim: list[float] = field(default_factory=list)
    edge_psnr: list[float] = field(default_factory=list)  # top tercile of HR gradient
    flat_psnr: list[float] = field(default_factory=list)  # bottom tercile
    lr_fidelity: list[float] = field(default_factory=list)  # mean over the clear LR frames
    examples: list[np.ndarray] = field(default_factory=list)  # SR of the first scenes
    example_scales: list[np.ndarray] = field(default_factory=list)  # and a network's scale
    uncertainty: UncertaintyScores | None = None  # networks only
    change: ChangeScores | None = None  # scenes with a change field only

    PER_SCENE = ("cpsnr", "level_error", "cssim", "edge_psnr", "flat_psnr", "lr_fidelity")
    """The per-scene scores of a method's pipeline (``summary``: the strongest classical picks them,
    results.json lists them)."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.cpsnr))

    @property
    def seconds_per_scene(self) -> float:
        return float(np.mean(self.seconds)) if self.seconds else float("nan")


def network_method(model: torch.nn.Module, device: torch.device = torch.device("cpu")) -> Method:
    """The network run exactly as the engine runs it (``inference.tiled.super_resolve``)."""
    def run(frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return super_resolve(Stack.in_memory(frames, masks), model, device)
    return run


def standard_methods(networks: dict[str, torch.nn.Module] | None = None,
                     device: torch.device = torch.device("cpu")) -> dict[str, Method]:
    """The classical pipelines (``baselines.BASELINES``) and every network of `networks`."""
    methods: dict[str, Method] = dict(BASELINES)
    methods.update({name: network_method(model, device) for name, model in (networks or {}).items()})
    return methods


@dataclass(frozen=True)
class Scene:
    """One scene of a scenes dict."""

    frames: np.ndarray
    masks: np.ndarray
    hr: np.ndarray
    hr_mask: np.ndarray | None  # e.g. Proba-V's SM; None = every finite HR pixel is clear
    change: np.ndarray | None  # the surface change field, None without one


def scenes_of(scenes: dict[str, np.ndarray]) -> list[Scene]:
    """The scenes of a dict from ``datasets.samples.build_samples`` or an evaluation set."""
    def part(key: str, index: int) -> np.ndarray | None:
        return scenes[key][index] if key in scenes else None
    return [Scene(scenes["frames"][i], scenes["masks"][i], scenes["hr"][i], part("hr_mask", i),
                  part("change", i) if np.any(part("change", i)) else None) for i in range(len(scenes["hr"]))]


def change_regions(change: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside, away) masks of a change field (HR): where |change| >= CHANGE_INSIDE x its peak,
    and more than CHANGE_AWAY_PX pixels from any pixel where it exceeds 1% of its peak."""
    magnitude = np.abs(change)
    peak = float(magnitude.max(initial=0.0))
    if peak == 0:
        return np.zeros(change.shape, bool), np.ones(change.shape, bool)
    distance = ndimage.distance_transform_edt(magnitude <= 0.01 * peak)
    return magnitude >= CHANGE_INSIDE * peak, distance > CHANGE_AWAY_PX


def _add_change(scores: ChangeScores, best: Alignment | None, scene: Scene) -> None:
    """Add one scene's inside/away errors (DN) to `scores` (NaN for a scene without change);
    `best` is the cPSNR alignment in DN."""
    level = float(np.nanmean(scene.hr))
    if best is None or scene.change is None:
        for values, value in zip(scores.lists(), (np.nan, np.nan, np.nan, level)):
            values.append(value)
        return
    u, v = best.offset
    height, width = best.hr.shape
    inside, away = (region[u:u + height, v:v + width] & best.mask for region in change_regions(scene.change))
    error = best.sr - best.hr  # SR - target
    sign = np.sign(scene.change[u:u + height, v:v + width])

    def rmse(region: np.ndarray) -> float:
        return float(np.sqrt(np.mean(error[region] ** 2))) if region.any() else float("nan")
    signed = float(np.mean((error * sign)[inside])) if inside.any() else float("nan")
    for values, value in zip(scores.lists(), (rmse(inside), rmse(away), signed, level)):
        values.append(value)


def evaluate(scenes: dict[str, np.ndarray], methods: dict[str, Method],
             data_range: float = S2_DATA_RANGE, full: bool = False, examples: int = 0) -> list[Scores]:
    """Score every method on every scene, with the time it took.

    With `full`, also cSSIM, PSNR on the most and least textured thirds of the pixels, and LR
    fidelity (the SR re-degraded onto every clear LR frame as the engine prepares it: whole-pixel
    moves, the reference's radiometry, sub-pixel phases). Methods that return a scale get
    uncertainty scores; scenes with a `change` field get change scores. `examples` keeps the
    SR (and scale) of the first scenes for figures.
    """
    listed = scenes_of(scenes)
    prepared = [engine_prepared(scene.frames, scene.masks) for scene in listed] if full else []
    results = []
    for name, method in methods.items():
        scores = Scores(name, change=ChangeScores() if any(scene.change is not None for scene in listed) else None)
        pooled: tuple[list, list, list] = ([], [], [])
        for index, scene in enumerate(listed):
            started = time.perf_counter()
            output = method(scene.frames, scene.masks)
            scores.seconds.append(time.perf_counter() - started)
            sr, scale = output if isinstance(output, tuple) else (output, None)
            scores.cpsnr.append(cpsnr(sr / data_range, scene.hr / data_range, scene.hr_mask))
            scores.level_error.append(level_error(sr, scene.hr, scene.hr_mask))
            if full:
                _add_full_scores(scores, sr, scene, prepared[index], data_range)
            if scale is not None or scene.change is not None:
                best = best_alignment(sr.astype(np.float64), scene.hr.astype(np.float64), scene.hr_mask, BORDER)
                if scale is not None:
                    _add_uncertainty(pooled, best, scale)
            if scores.change is not None:
                _add_change(scores.change, best if scene.change is not None else None, scene)
            if index < examples:
                scores.examples.append(sr)
                scores.example_scales += [] if scale is None else [scale]
        if pooled[0]:
            scores.uncertainty = UncertaintyScores(np.concatenate(pooled[0]), np.concatenate(pooled[1]), pooled[2])
        results.append(scores)
    return results


def _add_full_scores(scores: Scores, sr: np.ndarray, scene: Scene, prepared: Prepared, data_range: float) -> None:
    """cSSIM, edge / flat PSNR and LR fidelity of one scene."""
    sr_unit, hr_unit = sr / data_range, scene.hr / data_range
    scores.cssim.append(cssim(sr_unit, hr_unit, scene.hr_mask))
    flat, _, edges = gradient_stratified_psnr(sr_unit, hr_unit, scene.hr_mask)
    scores.flat_psnr.append(float(flat))
    scores.edge_psnr.append(float(edges))
    fidelity = lr_fidelity(sr_unit, prepared.frames / data_range, prepared.masks, prepared.phases,
                           LR_FIDELITY_PSF_SIGMA)
    scores.lr_fidelity.append(float(np.nanmean(fidelity)) if np.isfinite(fidelity).any() else float("nan"))


def on_aligned_pixels(best: Alignment, image: np.ndarray) -> np.ndarray:
    """The values of `image` (on the SR's grid, e.g. a predicted scale) at the clear pixels of the
    cPSNR alignment `best`, in the order of ``np.abs(best.error)[best.mask]``."""
    height, width = image.shape
    return image[BORDER:height - BORDER, BORDER:width - BORDER][best.mask]


def _add_uncertainty(pooled: tuple[list, list, list], best: Alignment, scale: np.ndarray) -> None:
    """One scene's |error| and predicted scale on its clear aligned pixels, and their Spearman."""
    cropped = on_aligned_pixels(best, scale)
    error = np.abs(best.error)[best.mask]
    pooled[0].append(error)
    pooled[1].append(cropped)
    pooled[2].append(spearman(cropped, error))
