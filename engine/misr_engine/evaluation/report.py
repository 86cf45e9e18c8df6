"""The evaluation report: a Markdown page with a table of every method and PNG figures."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .scores import Scores, UncertaintyScores
from .metrics import ause, laplace_calibration, oracle_sparsification_curve, sparsification_curve

FRACTIONS = np.linspace(0.0, 0.95, 40)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def results_table(results: list[Scores], reference: str) -> str:
    """Markdown table: mean scores per method, margin over `reference`, wins, time."""
    base = next(r for r in results if r.method == reference)
    full = bool(base.cssim)
    header = ["method", "cPSNR (dB)", f"vs {reference} (dB)", "scenes better"]
    if full:
        header += ["cSSIM", "edge PSNR (dB)", "flat PSNR (dB)", "LR fidelity (dB)"]
    header.append("s / scene")
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for r in results:
        wins = int(np.sum(np.asarray(r.cpsnr) > np.asarray(base.cpsnr)))
        row = [r.method, f"{r.mean:.2f}", f"{r.mean - base.mean:+.2f}", f"{wins}/{len(r.cpsnr)}"]
        if full:
            row += [f"{np.mean(r.cssim):.4f}", f"{np.mean(r.edge_psnr):.2f}", f"{np.mean(r.flat_psnr):.2f}",
                    f"{np.nanmean(r.lr_fidelity):.2f}"]
        row.append(f"{r.seconds / len(r.cpsnr):.2f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_sparsification(path: Path, uncertainty: UncertaintyScores) -> float:
    """Sparsification curve of the predicted scale vs the oracle and random removal; returns AUSE."""
    plt = _pyplot()
    curve = sparsification_curve(uncertainty.abs_error, uncertainty.scale, FRACTIONS)
    oracle = oracle_sparsification_curve(uncertainty.abs_error, FRACTIONS)
    figure, axis = plt.subplots(figsize=(5.5, 4))
    axis.plot(FRACTIONS, curve, label="PIUnet uncertainty")
    axis.plot(FRACTIONS, oracle, "--", label="oracle (true error)")
    axis.axhline(uncertainty.abs_error.mean(), color="grey", linestyle=":", label="random removal")
    axis.set_xlabel("fraction of pixels removed (most uncertain first)")
    axis.set_ylabel("mean |error| of remaining pixels (input units)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return ause(uncertainty.abs_error, uncertainty.scale, FRACTIONS)


def plot_calibration(path: Path, uncertainty: UncertaintyScores) -> tuple[np.ndarray, np.ndarray]:
    """Observed vs nominal coverage of the Laplace intervals."""
    plt = _pyplot()
    nominal, observed = laplace_calibration(uncertainty.abs_error, uncertainty.scale)
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    axis.plot(nominal, observed, "o-", label="PIUnet")
    axis.set_xlabel("nominal coverage")
    axis.set_ylabel("observed coverage")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return nominal, observed


def plot_examples(path: Path, hr: list[np.ndarray], results: list[Scores], methods: list[str],
                  uncertainty: list[np.ndarray] | None = None) -> None:
    """Rows of example scenes: HR, the chosen methods, |error| and uncertainty of the last one."""
    plt = _pyplot()
    chosen = [next(r for r in results if r.method == m) for m in methods]
    columns = 1 + len(chosen) + 1 + (1 if uncertainty else 0)
    figure, axes = plt.subplots(len(hr), columns, figsize=(2.6 * columns, 2.7 * len(hr)), squeeze=False)
    for row, reference in enumerate(hr):
        low, high = np.percentile(reference, [1, 99])
        panels = [("real HR", reference)] + [(r.method, r.examples[row]) for r in chosen]
        for axis, (title, image) in zip(axes[row], panels):
            axis.imshow(image, cmap="gray", vmin=low, vmax=high)
            axis.set_title(title, fontsize=8)
        error = np.abs(chosen[-1].examples[row] - reference)
        error = error - np.nanmedian(error)  # brightness bias is not an error in cPSNR
        axes[row][len(panels)].imshow(np.abs(error), cmap="magma", vmin=0, vmax=np.nanpercentile(np.abs(error), 99))
        axes[row][len(panels)].set_title(f"|error| {chosen[-1].method}", fontsize=8)
        if uncertainty:
            axes[row][len(panels) + 1].imshow(uncertainty[row], cmap="magma",
                                              vmin=0, vmax=np.nanpercentile(uncertainty[row], 99))
            axes[row][len(panels) + 1].set_title("predicted uncertainty", fontsize=8)
        for axis in axes[row]:
            axis.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_training_curves(log_csv: Path, path: Path) -> None:
    """Training loss and validation cPSNR against steps, from training's log.csv."""
    plt = _pyplot()
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


def candidates_section(scenes: dict[str, np.ndarray], candidates: dict, reference: Scores) -> str:
    """A Markdown section comparing other trained weights (e.g. other losses) on the same scenes:
    cPSNR and its margin over `reference`, and the uncertainty's Spearman correlation."""
    from .scores import evaluate, network_method, uncertainty_scores

    if not candidates:
        return ""
    lines = ["## Candidates compared", "",
             f"Other weights on the same scenes (margin over {reference.method}).", "",
             f"| weights | cPSNR (dB) | vs {reference.method} (dB) | Spearman (pooled / per scene) |",
             "|---|---:|---:|---:|"]
    for label, model in candidates.items():
        scores = evaluate(scenes, {label: network_method(model)})[0]
        uncertainty = uncertainty_scores(scenes, model)
        lines.append(f"| {label} | {scores.mean:.2f} | {scores.mean - reference.mean:+.2f} | "
                     f"{uncertainty.spearman_pooled:.3f} / {np.mean(uncertainty.spearman_per_scene):.3f} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, scenes: dict[str, np.ndarray], model, model_label: str,
                 reference: str = "registered_mean_wiener", examples: int = 3,
                 candidates: dict | None = None) -> Path:
    """Evaluate every baseline and `model` on `scenes`, write report.md and figures into `out`.

    `candidates` ({label: model}) are other weights, compared in a section of their own."""
    import json

    import torch

    from .scores import evaluate, standard_methods, uncertainty_scores
    from ..inference.tiled import super_resolve
    from ..rasters.stack import Stack

    out.mkdir(parents=True, exist_ok=True)
    results = evaluate(scenes, standard_methods(model), full=True, examples=examples)
    uncertainty = uncertainty_scores(scenes, model)
    area = plot_sparsification(out / "sparsification.png", uncertainty)
    nominal, observed = plot_calibration(out / "calibration.png", uncertainty)
    example_scales = [super_resolve(Stack.in_memory(f, m), model, torch.device("cpu"))[1]
                      for f, m in zip(scenes["frames"][:examples], scenes["masks"][:examples])]
    plot_examples(out / "examples.png", list(scenes["hr"][:examples]), results,
                  ["bicubic_masked_mean", "registered_mean_wiener", "piunet"], example_scales)
    n, t, h, w = scenes["frames"].shape
    summary = {r.method: {"cpsnr": r.mean, "cpsnr_per_scene": r.cpsnr, "seconds": r.seconds} for r in results}
    summary["uncertainty"] = {"spearman_pooled": uncertainty.spearman_pooled,
                              "spearman_per_scene_mean": float(np.mean(uncertainty.spearman_per_scene)),
                              "ause": area, "calibration": dict(zip(map(str, nominal), observed.tolist()))}
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    calibration = " | ".join(f"{a:.2f} -> {b:.2f}" for a, b in zip(nominal, observed))
    text = f"""# Evaluation report: {model_label}

{n} held-out scenes of {t} frames, {h} x {w} LR -> {3 * h} x {3 * w} HR; every method runs the
whole pipeline from the acquired (unregistered, cloudy) frames. cPSNR / cSSIM: Proba-V
definition (3-pixel border, 49 shifts, brightness bias) on reflectance. Edge / flat PSNR: the
most / least textured third of the pixels (HR gradient). LR fidelity: the SR re-degraded
(registration shifts, Gaussian PSF 1.2 HR px) against every clear LR frame, bias removed.

{results_table(results, reference)}

## Uncertainty

* Spearman correlation of the predicted scale with |error|: {uncertainty.spearman_pooled:.3f}
  pooled over all pixels, {np.mean(uncertainty.spearman_per_scene):.3f} per scene on average.
* AUSE (area between the sparsification curve and the oracle, in input units, here digital
  numbers): {area:.3f}.
* Calibration of the Laplace scale (nominal -> observed coverage): {calibration}.

![sparsification](sparsification.png) ![calibration](calibration.png)

## Examples

![examples](examples.png)
"""
    text += "\n" + candidates_section(scenes, candidates or {}, next(r for r in results if r.method == reference))
    (out / "report.md").write_text(text.rstrip("\n") + "\n")
    return out / "report.md"
