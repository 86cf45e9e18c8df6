"""Statistics of per-scene scores: paired bootstrap intervals on margins, the strongest classical
baseline per scene.

A margin is the network's cPSNR minus a baseline's on the same scene; its mean gets a percentile
bootstrap interval from resampling the scenes (the pairs stay together, so what varies from
scene to scene, shared by both methods, cancels out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
"""Bootstrap resamples of the scenes for every interval."""
BOOTSTRAP_SEED = 0
"""Seed of the bootstrap's random generator (every interval of a report uses it afresh)."""
CONFIDENCE = 0.95
"""Level of the intervals."""


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap confidence interval (NaN bounds with fewer than two values)."""

    mean: float
    low: float
    high: float

    def covers(self, value: float) -> bool:
        return bool(self.low <= value <= self.high)

    def format(self, digits: int = 2, signed: bool = True) -> str:
        """'+1.23 [+0.98, +1.47]' (or the mean alone when there is no interval)."""
        form = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
        if not np.isfinite(self.low):
            return form.format(self.mean)
        return f"{form.format(self.mean)} [{form.format(self.low)}, {form.format(self.high)}]"


def bootstrap_mean(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                   level: float = CONFIDENCE) -> Interval:
    """Mean of the finite `values` and its percentile bootstrap interval at `level`."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    if values.size == 1:
        return Interval(float(values[0]), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(values.mean()), float(low), float(high))


@dataclass(frozen=True)
class Margin:
    """Per-scene margins (dB) of a method over a baseline, and their summary."""

    per_scene: np.ndarray
    interval: Interval

    @property
    def worst(self) -> float:
        return float(np.min(self.per_scene))

    @property
    def wins(self) -> int:
        """Scenes where the method is strictly ahead."""
        return int(np.sum(self.per_scene > 0))

    @property
    def scenes(self) -> int:
        return int(self.per_scene.size)

    def to_json(self) -> dict:
        return {"mean": self.interval.mean, "ci95": [self.interval.low, self.interval.high],
                "worst": self.worst, "wins": self.wins, "scenes": self.scenes,
                "per_scene": self.per_scene.tolist()}


def margin(method: Sequence[float], baseline: Sequence[float], **bootstrap) -> Margin:
    """`method` - `baseline`, scene by scene (paired), with the bootstrap interval of the mean."""
    differences = np.asarray(method, np.float64) - np.asarray(baseline, np.float64)
    return Margin(differences, bootstrap_mean(differences, **bootstrap))


def strongest_per_scene(scores: Mapping[str, Sequence[float]],
                        candidates: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Per scene, the highest score among `candidates` and the name of the method that has it
    (ties go to the first candidate)."""
    table = np.array([scores[name] for name in candidates], np.float64)
    table = np.where(np.isfinite(table), table, -np.inf)
    best = np.argmax(table, axis=0)
    return table[best, np.arange(table.shape[1])], [candidates[i] for i in best]
