"""`misr evaluate`: score a network (and other weights) and the classical baselines on the
evaluation sets, as one report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..inference.backends import resolve_device
from ..models.weights import LoadedModel, load_model
from .report import Network, write_report
from .sets import select_sets
from .summary import score_set


def _network(loaded: LoadedModel, name: str) -> Network:
    loss = json.loads(loaded.metadata.get("training", "{}")).get("loss")
    return Network(name, str(loaded.path), loaded.sha256, f"loss {loss}" if loss else "")


def evaluate_weights(model: str, weights: str | None, output: str, sets: list[str] | None = None,
                     scenes: int | None = None, data: str | None = None, compare: list[str] | None = None,
                     device: str = "cpu", log: Callable[[str], None] = lambda line: None,
                     frames: int | None = None) -> Path:
    """Score `weights` of `model` (default: the shipped ones), and every weights file of `compare`,
    on the named evaluation `sets` (default: the reported ones; ``sets.SETS``) with at most
    `scenes` scenes each, plus the scenes of `data` (an `.npz` of `misr make-dataset --raw`); the
    simulated sets drawn with `frames` frames per scene where given.
    Writes the report into `output` and returns its path."""
    chosen = select_sets(sets, data, frames)
    torch_device = resolve_device(device)
    loaded = [load_model(model, weights, torch_device)] + [load_model(model, path, torch_device)
                                                           for path in compare or []]
    names = [model] + [f"{model} ({index})" for index in range(1, len(loaded))]
    networks = {name: entry.model for name, entry in zip(names, loaded)}
    results = []
    for evaluation_set in chosen:
        log(f"scoring set {evaluation_set.name}: {evaluation_set.description}")
        results.append(score_set(evaluation_set, networks, scenes, torch_device))
    label = f"{model} ({loaded[0].path.name}, sha256 {loaded[0].sha256[:12]})"
    return write_report(Path(output), results, label, [_network(e, n) for e, n in zip(loaded, names)],
                        str(torch_device))
