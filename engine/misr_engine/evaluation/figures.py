"""The figures of the evaluation report (PNG, matplotlib without a display)."""

from __future__ import annotations

import csv
from pathlib import Path
from types import ModuleType

import numpy as np

from .metrics import laplace_calibration, oracle_sparsification_curve, sparsification_curve
from .scores import Scores, UncertaintyScores

FRACTIONS = np.linspace(0.0, 0.95, 40)
"""Fractions of pixels removed in the sparsification curves."""


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_sparsification(path: Path, curves: dict[str, UncertaintyScores]) -> None:
    """One panel per set: the sparsification curve of the predicted scale, the oracle and random removal."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.4), squeeze=False)
    for axis, (title, uncertainty) in zip(axes[0], curves.items()):
        axis.plot(FRACTIONS, sparsification_curve(uncertainty.abs_error, uncertainty.scale, FRACTIONS),
                  label="predicted scale")
        axis.plot(FRACTIONS, oracle_sparsification_curve(uncertainty.abs_error, FRACTIONS), "--",
                  label="oracle (true error)")
        axis.axhline(uncertainty.abs_error.mean(), color="grey", linestyle=":", label="random removal")
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("fraction removed (most uncertain first)", fontsize=8)
    axes[0][0].set_ylabel("mean |error| of the rest (DN)")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_calibration(path: Path, curves: dict[str, UncertaintyScores]) -> None:
    """Observed against nominal coverage of the Laplace intervals, one line per set."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(4.4, 4.2))
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for title, uncertainty in curves.items():
        nominal, observed = laplace_calibration(uncertainty.abs_error, uncertainty.scale)
        axis.plot(nominal, observed, "o-", label=title, markersize=3)
    axis.set_xlabel("nominal coverage")
    axis.set_ylabel("observed coverage")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_examples(path: Path, hr: list[np.ndarray], scores: list[Scores]) -> None:
    """Rows of example scenes: the target, each method's SR, |error| and predicted scale of the last."""
    plt = pyplot()
    last = scores[-1]
    columns = 1 + len(scores) + 1 + (1 if last.example_scales else 0)
    figure, axes = plt.subplots(len(hr), columns, figsize=(2.4 * columns, 2.5 * len(hr)), squeeze=False)
    for row, reference in enumerate(hr):
        low, high = np.nanpercentile(reference, [1, 99])
        panels = [("target", reference)] + [(s.method, s.examples[row]) for s in scores]
        for axis, (title, image) in zip(axes[row], panels):
            axis.imshow(image, cmap="gray", vmin=low, vmax=high)
            axis.set_title(title, fontsize=8)
        error = last.examples[row] - reference
        error = np.abs(error - np.nanmedian(error))  # a brightness bias is not an error in cPSNR
        axes[row][len(panels)].imshow(error, cmap="magma", vmin=0, vmax=np.nanpercentile(error, 99))
        axes[row][len(panels)].set_title(f"|error| {last.method}", fontsize=8)
        if last.example_scales:
            scale = last.example_scales[row]
            axes[row][len(panels) + 1].imshow(scale, cmap="magma", vmin=0, vmax=np.nanpercentile(scale, 99))
            axes[row][len(panels) + 1].set_title("predicted scale", fontsize=8)
        for axis in axes[row]:
            axis.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=72)
    plt.close(figure)


def plot_training_curves(log_csv: Path, path: Path) -> None:
    """Training loss and validation cPSNR against steps, from training's log.csv."""
    plt = pyplot()
    with open(log_csv) as handle:
        rows = [row for row in csv.reader(handle) if row]
    steps = [int(r[0]) for r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for loss in sorted({r[1] for r in rows}):
        left.plot([s for s, r in zip(steps, rows) if r[1] == loss],
                  [float(r[2]) for r in rows if r[1] == loss], "o-", label=f"train ({loss})")
    left.set_xlabel("step")
    left.set_ylabel("training loss (normalised units)")
    left.legend()
    right.plot(steps, [float(r[3]) for r in rows], "o-", color="C2")
    right.set_xlabel("step")
    right.set_ylabel("validation cPSNR (dB)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
