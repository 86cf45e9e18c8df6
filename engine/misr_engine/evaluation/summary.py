"""One evaluation set scored: every method's per-scene scores, the strongest classical baseline per
scene, and every network's margins over each baseline with bootstrap intervals."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .baselines import BASELINES, STRONGEST_CANDIDATES
from .metrics import ause, laplace_calibration
from .scores import ChangeScores, Scores, evaluate, standard_methods
from .sets import EvaluationSet
from .statistics import Interval, Margin, bootstrap_mean, margin, strongest_per_scene

STRONGEST = "strongest_classical"
"""The per-scene best of `baselines.STRONGEST_CANDIDATES` (chosen with the HR: an oracle choice)."""


@dataclass
class SetResult:
    """Every score of one evaluation set."""

    name: str
    description: str
    shape: tuple[int, int, int, int]  # scenes, frames, LR height, LR width
    scores: dict[str, Scores]  # classical methods, STRONGEST, then the networks
    networks: list[str]
    strongest_choice: list[str]  # per scene, the method STRONGEST took
    margins: dict[str, dict[str, Margin]]  # network -> baseline -> margin
    examples_hr: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0  # to draw and score the whole set

    def spearman(self, network: str) -> Interval:
        """Mean per-scene Spearman of the network's scale with its |error|, with its interval."""
        uncertainty = self.scores[network].uncertainty
        return bootstrap_mean(uncertainty.spearman_per_scene) if uncertainty else bootstrap_mean([])


def _pick(values: list, choice: list[int]) -> list:
    return [values[index][scene] for scene, index in enumerate(choice)] if values and values[0] else []


def strongest_classical(scores: dict[str, Scores],
                        candidates: tuple[str, ...] = STRONGEST_CANDIDATES) -> tuple[Scores, list[str]]:
    """The per-scene best (cPSNR) of the `candidates`, as a method of its own: every per-scene
    score is the chosen method's; its time is the sum of the candidates' (all must run)."""
    _, names = strongest_per_scene({name: scores[name].cpsnr for name in candidates}, candidates)
    choice = [candidates.index(name) for name in names]
    chosen = [scores[name] for name in candidates]
    best = Scores(STRONGEST, seconds=[float(t) for t in np.sum([s.seconds for s in chosen], axis=0)])
    for key in Scores.PER_SCENE:
        setattr(best, key, _pick([getattr(s, key) for s in chosen], choice))
    if all(s.change for s in chosen):
        best.change = ChangeScores(*(_pick([getattr(s.change, key) for s in chosen], choice)
                                     for key in ChangeScores.FIELDS))
    return best, names


def score_set(evaluation_set: EvaluationSet, networks: dict[str, torch.nn.Module], count: int | None = None,
              device: torch.device = torch.device("cpu"), examples: int = 2, workers: int = 2) -> SetResult:
    """Draw the set's scenes and score the classical pipelines, the strongest of them per scene
    and every network of `networks` (name -> model) on them."""
    started = time.perf_counter()
    scenes = evaluation_set.scenes(count, workers)
    results = {s.method: s for s in evaluate(scenes, standard_methods(networks, device), full=True,
                                             examples=examples)}
    best, choice = strongest_classical(results)
    scores = {**{name: results[name] for name in BASELINES}, STRONGEST: best,
              **{name: results[name] for name in networks}}
    baselines = [STRONGEST, *BASELINES]
    margins = {network: {baseline: margin(scores[network].cpsnr, scores[baseline].cpsnr) for baseline in baselines}
               for network in networks}
    return SetResult(evaluation_set.name, evaluation_set.description, tuple(scenes["frames"].shape), scores,
                     list(networks), choice, margins, list(scenes["hr"][:examples]),
                     time.perf_counter() - started)


def json_safe(value: Any) -> Any:
    """`value` (nested dicts, lists, numbers) with NaN and infinities as null: JSON has neither."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def scores_json(scores: Scores) -> dict:
    """Every per-scene number of one method, and its means."""
    out: dict = {"cpsnr_mean": scores.mean, "seconds_per_scene": scores.seconds_per_scene}
    for key in (*Scores.PER_SCENE, "seconds"):
        out[key] = list(getattr(scores, key))
    if scores.uncertainty:
        nominal, observed = laplace_calibration(scores.uncertainty.abs_error, scores.uncertainty.scale)
        out["uncertainty"] = {"spearman_per_scene": list(scores.uncertainty.spearman_per_scene),
                              "spearman_pooled": scores.uncertainty.spearman_pooled,
                              "ause": ause(scores.uncertainty.abs_error, scores.uncertainty.scale),
                              "coverage": {f"{n:g}": float(o) for n, o in zip(nominal, observed)}}
    if scores.change:
        out["change"] = {key: list(getattr(scores.change, key))
                         for key in ChangeScores.FIELDS}
    return out


def set_json(result: SetResult) -> dict:
    """The set's description, every method's per-scene scores, the strongest choice and the margins."""
    n, t, h, w = result.shape
    return {"description": result.description, "scenes": n, "frames": t, "lr_size": [h, w],
            "seconds": result.seconds,
            "methods": {name: scores_json(s) for name, s in result.scores.items()},
            "strongest_choice": result.strongest_choice,
            "margins": {network: {baseline: m.to_json() for baseline, m in per.items()}
                        for network, per in result.margins.items()},
            "spearman_per_scene": {network: _interval_json(result.spearman(network)) for network in result.networks}}


def _interval_json(interval: Interval) -> dict:
    return {"mean": interval.mean, "ci95": [interval.low, interval.high]}
