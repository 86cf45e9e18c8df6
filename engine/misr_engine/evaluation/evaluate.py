"""`misr evaluate`: score a model and the classical baselines on held-out scenes, as a report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..datasets.samples import load_samples
from ..errors import MisrError
from ..models.weights import load_model
from .report import write_report
from .scores import holdout_scenes


def evaluate_weights(model: str, weights: str | None, output: str, data: str | None = None,
                     scenes: int = 24, compare: list[str] | None = None) -> Path:
    """Evaluate `weights` of `model` (default: the shipped ones) on `data` (an `.npz` of
    `misr make-dataset --raw`) or on `scenes` generated held-out scenes; other weights in
    `compare` are scored in a section of their own. Returns the report's path."""
    loaded = load_model(model, weights)
    if data:
        if not os.path.isfile(data):
            raise MisrError(f"{data}: file not found")
        stacks = load_samples(data)
        if stacks.get("registered", np.array(True)).item():
            raise MisrError(f"{data}: frames are pre-registered (training data); "
                            "make evaluation data with `misr make-dataset --raw`")
    else:
        stacks = holdout_scenes(scenes)
    label = f"{loaded.name} ({loaded.path.name}, sha256 {loaded.sha256[:12]})"
    candidates = {}
    for path in compare or []:
        other = load_model(model, path)
        loss = json.loads(other.metadata.get("training", "{}")).get("loss", "?")
        candidates[f"{path} (loss {loss}, sha256 {other.sha256[:12]})"] = other.model
    return write_report(Path(output), stacks, loaded.model, label, candidates=candidates)
