"""The evaluation report: one Markdown page (a summary table, then a section per set), its
figures and `results.json` with every per-scene number. (Training's curves are drawn here too.)"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .baselines import BASELINES, STRONGEST_CANDIDATES
from ..datasets.cards import display_path
from .figures import plot_calibration, plot_examples, plot_sparsification
from .metrics import LAPLACE_LEVELS, ause, laplace_calibration
from .scores import BORDER, CHANGE_AWAY_PX, CHANGE_INSIDE, LR_FIDELITY_PSF_SIGMA, Scores
from .statistics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE
from .summary import STRONGEST, SetResult, json_safe, set_json

EXAMPLE_METHODS = ("bicubic_masked_mean", "registered_mean_wiener")
"""Classical methods shown beside the networks in the example figures."""


@dataclass(frozen=True)
class Network:
    """A network under test: its name in the tables and where its weights come from."""

    name: str
    weights: str
    sha256: str
    note: str = ""  # e.g. the loss it was trained with


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    """A Markdown table: the first `text_columns` columns left-aligned, the numbers right-aligned."""
    rule = "|" + "---|" * text_columns + "---:|" * (len(header) - text_columns)
    return "\n".join([_row(header), rule, *map(_row, rows)])


def _db(value: float, signed: bool = False) -> str:
    return "n/a" if not np.isfinite(value) else (f"{value:+.2f}" if signed else f"{value:.2f}")


def summary_table(results: list[SetResult]) -> str:
    """One row per set and network: its margin over the strongest classical baseline and its Spearman."""
    several = len({n for r in results for n in r.networks}) > 1
    header = ["set", "description", "scenes"] + (["network"] if several else []) + [
        "network cPSNR (dB)", "strongest classical (dB)", "margin (dB) [95% CI]", "worst scene (dB)",
        "scenes won", "per-scene Spearman [95% CI]"]
    rows = []
    for result in results:
        for network in result.networks:
            best = result.margins[network][STRONGEST]
            rows.append([f"[{result.name}](#{result.name})", result.description, str(result.shape[0])]
                        + ([network] if several else [])
                        + [_db(result.scores[network].mean), _db(result.scores[STRONGEST].mean),
                           best.interval.format(), _db(best.worst, signed=True), f"{best.wins}/{best.scenes}",
                           result.spearman(network).format(3, signed=False)])
    return _table(header, rows, text_columns=2)


def methods_table(result: SetResult) -> str:
    """Mean scores of every method of a set."""
    rows = []
    for name, scores in result.scores.items():
        rows.append([name, _db(scores.mean), _level(scores.level_error), f"{np.nanmean(scores.cssim):.4f}",
                     _db(np.nanmean(scores.edge_psnr)), _db(np.nanmean(scores.flat_psnr)),
                     _db(np.nanmean(scores.lr_fidelity)), f"{scores.seconds_per_scene:.2f}"])
    return _table(["method", "cPSNR (dB)", "level off (%): mean / worst", "cSSIM", "edge PSNR (dB)",
                   "flat PSNR (dB)", "LR fidelity (dB)", "s / scene"], rows)


def _level(errors: list[float]) -> str:
    """Mean and worst of per-scene level errors (%), or n/a."""
    finite = [value for value in errors if np.isfinite(value)]
    return f"{np.mean(finite):.2f} / {max(finite):.2f}" if finite else "n/a"


def margins_table(result: SetResult, network: str) -> str:
    rows = [[baseline, m.interval.format(), _db(m.worst, signed=True), f"{m.wins}/{m.scenes}"]
            for baseline, m in result.margins[network].items()]
    return _table([f"{network} over", "mean margin (dB) [95% CI]", "worst scene (dB)", "scenes won"], rows)


def uncertainty_lines(result: SetResult, network: str) -> list[str]:
    uncertainty = result.scores[network].uncertainty
    if uncertainty is None:
        return []
    nominal, observed = laplace_calibration(uncertainty.abs_error, uncertainty.scale)
    coverage = ", ".join(f"{n:.0%} -> {o:.1%}" for n, o in zip(nominal, observed))
    return [f"* {network}: Spearman of the predicted scale with |error| per scene "
            f"{result.spearman(network).format(3, signed=False)}, pooled over all pixels "
            f"{uncertainty.spearman_pooled:.3f}; AUSE {ause(uncertainty.abs_error, uncertainty.scale):.2f} DN; "
            f"coverage of the Laplace intervals (nominal -> observed): {coverage}."]


def change_percentages(scores: Scores) -> tuple[float, float, float]:
    """Means over the scenes with a change of the RMSE inside the field, away from it and the error
    inside along the change, each in % of the scene's mean level."""
    change = scores.change
    level = np.asarray(change.level)
    return tuple(float(100 * np.nanmean(np.asarray(values) / level))
                 for values in (change.inside_rmse, change.away_rmse, change.inside_signed))


def change_table(result: SetResult) -> str:
    """Errors inside the changed fields and away from them (scenes with a change only)."""
    rows = [[name] + [f"{value:+.2f}" if index == 2 else f"{value:.2f}"
                      for index, value in enumerate(change_percentages(scores))]
            for name, scores in result.scores.items() if scores.change is not None]
    return _table(["method", "RMSE inside the field (% of level)", "RMSE away from it (% of level)",
                   "mean error inside, along the change (% of level)"], rows)


def change_summary(results: list[SetResult]) -> list[str]:
    """One line per network on the surface-change set: its errors inside and away from the changed
    field against the strongest classical baseline's."""
    lines = []
    for result in (r for r in results if r.name == "surface_change"):
        for network in result.networks:
            parts = []
            for name in (network, STRONGEST):
                inside, away, signed = change_percentages(result.scores[name])
                parts.append(f"{name} RMSE {inside:.2f}% of the level inside the changed field, {away:.2f}% away "
                             f"from it, {signed:+.2f}% along the change inside")
            lines.append(f"* surface_change: {'; '.join(parts)}.")
    return lines


def set_section(result: SetResult) -> str:
    n, t, h, w = result.shape
    counts = ", ".join(f"{name} on {result.strongest_choice.count(name)}" for name in STRONGEST_CANDIDATES)
    lines = [f"## {result.name}", "", f"{result.description[0].upper()}{result.description[1:]}. "
             f"{n} scene(s) of {t} frames, {h} x {w} LR -> {3 * h} x {3 * w} HR "
             f"({result.seconds:.0f} s to draw and score).", "", methods_table(result), "",
             f"The strongest classical baseline was {counts} scene(s).", ""]
    for network in result.networks:
        lines += [margins_table(result, network), ""]
    lines += [line for network in result.networks for line in uncertainty_lines(result, network)]
    changed = [s for s in result.scores.values() if s.change is not None]
    if changed:
        scenes = int(np.sum(np.isfinite(changed[0].change.inside_rmse)))
        lines += ["", f"Surface change ({scenes} scene(s) with a changed field; inside: |change| >= "
                  f"{CHANGE_INSIDE:.0%} of its peak; away: more than {CHANGE_AWAY_PX} HR px from any trace of "
                  "it; errors after the cPSNR alignment; along the change: negative = less change than the "
                  "target's clear-temporal mean):", "", change_table(result)]
    lines += ["", f"![examples of {result.name}](examples_{result.name}.png)", ""]
    return "\n".join(lines)


def introduction(label: str, networks: list[Network], device: str) -> str:
    legend = _table(["network", "weights", "sha256", "note"],
                    [[n.name, f"`{display_path(n.weights)}`", n.sha256[:12], n.note] for n in networks], 4)
    return f"""# Evaluation report: {label}

Every method runs its whole pipeline from the acquired (unregistered, cloudy) frames of every
scene. The classical pipelines start from the frames prepared exactly as the engine prepares
them for its network (moved by whole LR pixels onto the frames' central position, the sub-pixel
phase applied on the HR grid, frames mapped onto the frames' median radiometry):
{", ".join(BASELINES)}. **Strongest classical**: per scene, the best cPSNR of
{", ".join(STRONGEST_CANDIDATES)} (chosen with the target: no classical user could pick better).

cPSNR / cSSIM: the Proba-V definition ({BORDER}-pixel border, {(2 * BORDER + 1) ** 2} shifts,
brightness bias) on reflectance (DN / 10000). Margins are per scene (network minus baseline);
their mean has a paired percentile bootstrap {CONFIDENCE:.0%} interval ({BOOTSTRAP_RESAMPLES}
resamples of the scenes, seed {BOOTSTRAP_SEED}); worst scene = the lowest margin. Level off: |mean
SR - mean target| / mean target per scene, the bias cPSNR removes (a level off shows when the SR is
compared with the frames or mapped to reflectance). Edge / flat
PSNR: the most / least textured third of the pixels (HR gradient). LR fidelity: the SR
re-degraded (sub-pixel phases, Gaussian PSF {LR_FIDELITY_PSF_SIGMA} HR px, area decimation)
against every clear prepared LR frame, bias removed. Uncertainty: the predicted Laplace scale
against |error| after the cPSNR alignment; coverage at {", ".join(f"{v:.0%}" for v in LAPLACE_LEVELS)}.
Times: {device}, seconds per scene of each method (the strongest classical: its three candidates).

{legend}
"""


def write_report(out: Path, results: list[SetResult], label: str, networks: list[Network],
                 device: str = "cpu") -> Path:
    """Write report.md, results.json and the figures into `out`; returns the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    main = networks[0].name
    curves = {r.name: r.scores[main].uncertainty for r in results if r.scores[main].uncertainty is not None}
    for result in results:
        shown = [result.scores[name] for name in (*EXAMPLE_METHODS, *result.networks[1:], main)]
        plot_examples(out / f"examples_{result.name}.png", result.examples_hr, shown)
    if curves:
        plot_calibration(out / "calibration.png", curves)
        plot_sparsification(out / "sparsification.png", curves)
    text = "\n".join([introduction(label, networks, device), "## Summary", "",
                      "Margin of each network over the strongest classical baseline, per set:", "",
                      summary_table(results), "", *change_summary(results), "",
                      *(["![calibration](calibration.png)", "", "![sparsification](sparsification.png)", ""]
                        if curves else []),
                      *map(set_section, results)])
    (out / "report.md").write_text(text.rstrip("\n") + "\n")
    document = {"model": label, "device": device,
                "networks": [n.__dict__ for n in networks],
                "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "level": CONFIDENCE},
                "sets": {r.name: set_json(r) for r in results}}
    (out / "results.json").write_text(json.dumps(json_safe(document), indent=1))
    return out / "report.md"
