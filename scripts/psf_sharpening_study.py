"""The back-projection's PSF width per scene from its sharpening of the network's detail (``inference.psf_width``).

For every scene of the chosen sets, the network's gated SR (before the back-projection) is made
once; then, at each width of WIDTHS, the scene's SR with the back-projection through that width
(its cPSNR), the sharpening coefficient k of that back-projection's correction on the gated SR's
detail (``psf_width.sharpening``) and the misfit of the gated SR re-observed through that width
(``psf_width_study.misfit``). Rows go to a JSON-lines file; `--summary` prints, per set, the
median k and mean gain over the engine's width per width scored and, per candidate pair of
NARROWING_SLOPE and WIDENING_LIMIT, the gain of the engine's choice over (0, 0.02) and the margin
over the strongest classical pipeline (rows of other widths for the same scenes read
with `--also`). Besides the
engine's sets (``detail_gate_study.SETS``), `sensor-S`: the training ranges with every frame
blurred by one Gaussian of S HR px (times the pixels' box) and no halo, as one sharp sensor's
frames are; and psf_width_study's `mid-blur` and `wide-blur`.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/psf_sharpening_study.py --sets sensor-0.01 in-distribution \\
        --output rows.jsonl
    .venv/bin/python scripts/psf_sharpening_study.py --output rows.jsonl --summary --also other_widths.jsonl
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import psf_width_study
import torch
from detail_gate_study import SETS, CachedRunner
from misr_engine.datasets.simulate import Degradation
from misr_engine.evaluation import adaptation
from misr_engine.evaluation import baselines as B
from misr_engine.evaluation.adaptation import evidence_scenes, scene_score
from misr_engine.evaluation.baselines import BASELINES, STRONGEST_CANDIDATES
from misr_engine.inference import consistency, psf_width, tiled
from misr_engine.inference.backends import TorchRunner
from misr_engine.inference.psf_width import WIDTHS, sharpening
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.backprojection import PSF_SIGMA
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack

CANDIDATES = [(slope, limit) for slope in (0.0, 0.2, 0.4, 0.6, 0.8) for limit in (0.02, 0.05)]
"""The (NARROWING_SLOPE, WIDENING_LIMIT) candidates the summary compares with (0, 0.02), the engine
of 2026-12-05 afternoon before them (docs/evaluation/psf_width_target_line_rule.md)."""
SHARP_SETS = ("sensor-0.01", "sensor-0.5")


def add_sets(sensor_sigmas: list[float]) -> None:
    """Register the `sensor-S`, `mid-blur` and `wide-blur` sets (the in-distribution bands)."""
    blurred = dict(psf_width_study.BLURRED)
    for sigma in sensor_sigmas:
        blurred[f"sensor-{sigma:g}"] = replace(Degradation(), psf_sigma=(sigma, sigma), halo_probability=0.0)
    for name, conditions in blurred.items():
        adaptation.EVIDENCE_SETS[name] = replace(adaptation.EVIDENCE_SETS["in-distribution"], conditions=conditions)
        SETS[name] = (name, 9, 64)


def scene_row(runner: CachedRunner, frames: np.ndarray, masks: np.ndarray, hr: np.ndarray,
              widths: tuple[float, ...] = WIDTHS) -> dict:
    """k, misfit and cPSNR per width for one scene, and the strongest classical pipeline's cPSNR."""
    runner.cache.clear()
    stack = Stack.in_memory(frames, masks)
    with mock.patch.object(tiled, "SCENE_PSF_WIDTH", False):
        with mock.patch.object(consistency, "CONSISTENCY_STEPS", 0):
            gated = super_resolve(stack, runner)[0]
        made = {width: super_resolve(stack, runner, psf_sigma=width)[0] for width in widths}
    start = np.where(np.isfinite(gated), gated, np.nanmean(gated))
    prepared = B.engine_prepared(frames, masks)
    return {"k": {str(w): coefficient(gated, sr) for w, sr in made.items()},
            "misfit": {str(w): psf_width_study.misfit(start, prepared, w) for w in widths},
            "score": {str(w): scene_score(sr, hr) for w, sr in made.items()},
            "classical": max(scene_score(BASELINES[name](frames, masks), hr) for name in STRONGEST_CANDIDATES)}


def coefficient(before: np.ndarray, after: np.ndarray) -> float:
    """The sharpening coefficient k of `after` over `before` (``psf_width.sharpening``)."""
    made, together = sharpening(before, after)
    return made / together if together > 0 else 0.0


def chosen(k: dict[str, float], slope: float, limit: float) -> str:
    """The width ``psf_width.scene_psf_sigma`` picks for a scene with these k, with NARROWING_SLOPE
    `slope` and WIDENING_LIMIT `limit`."""
    with mock.patch.multiple(psf_width, NARROWING_SLOPE=slope, WIDENING_LIMIT=limit):
        return str(psf_width.choose_width(lambda width: k[str(width)]))


def merged(paths: list[Path]) -> list[dict]:
    """The rows of `paths`, those of one scene (set and index) made one, their widths together."""
    rows: dict[tuple[str, int], dict] = {}
    for path in paths:
        for row in map(json.loads, path.read_text().splitlines()):
            into = rows.setdefault((row["set"], row["scene"]), {"set": row["set"], "scene": row["scene"]})
            for key in ("k", "misfit", "score"):
                into.setdefault(key, {}).update(row[key])
            into["classical"] = row["classical"]
    return list(rows.values())


def summarise(rows: list[dict]) -> None:
    sets = list(dict.fromkeys(row["set"] for row in rows))
    fixed = str(PSF_SIGMA)
    for set_name in sets:
        own = [row for row in rows if row["set"] == set_name]
        names = [str(w) for w in WIDTHS if all(str(w) in row["k"] for row in own)]
        k = np.median([[row["k"][w] for w in names] for row in own], axis=0)
        gain = np.mean([[row["score"][w] - row["score"][fixed] for w in names] for row in own], axis=0)
        print(f"{set_name} ({len(own)} scenes), widths {names}: median k {np.round(k, 3).tolist()}, "
              f"mean gain over {fixed} {np.round(gain, 3).tolist()}")
    for slope, limit in CANDIDATES:
        print(f"narrowing slope {slope}, widening limit {limit}: over (0, 0.02)")
        for set_name in sets:
            own = [row for row in rows if row["set"] == set_name]
            try:
                picks = [(chosen(row["k"], 0.0, 0.02), chosen(row["k"], slope, limit)) for row in own]
            except KeyError as missing:
                print(f"   {set_name}: no k at {missing} HR px")
                continue
            gains = [row["score"][after] - row["score"][before] for row, (before, after) in zip(own, picks)]
            before = [row["score"][b] - row["classical"] for row, (b, _) in zip(own, picks)]
            after = [row["score"][a] - row["classical"] for row, (_, a) in zip(own, picks)]
            print(f"   {set_name}: gain {np.mean(gains):+.3f} (worst {min(gains):+.3f}, scenes moved "
                  f"{sum(b != a for b, a in picks)}); margin over the strongest classical {np.mean(before):+.3f} "
                  f"-> {np.mean(after):+.3f}, worst {min(before):+.3f} -> {min(after):+.3f}, lost "
                  f"{sum(b < 0 for b in before)} -> {sum(a < 0 for a in after)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["sensor-0.01", "sensor-0.5", "in-distribution"])
    parser.add_argument("--sensor-sigmas", type=float, nargs="*", default=[0.01, 0.5])
    parser.add_argument("--split", choices=["validation", "test"], default="validation",
                        help="test: for reporting a choice made on validation, never for choosing")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first SKIP scenes of each set (scored before)")
    parser.add_argument("--widths", type=float, nargs="+", default=list(WIDTHS),
                        help="HR px widths scored (default: every width the engine may choose)")
    parser.add_argument("--output", required=True, help="JSON-lines rows (appended)")
    parser.add_argument("--summary", action="store_true", help="only print the summary of --output")
    parser.add_argument("--weights", help="the network's weights file (default: the shipped weights)")
    parser.add_argument("--also", type=Path, nargs="*", default=[],
                        help="rows of the same scenes at other widths, read for the summary")
    args = parser.parse_args()
    add_sets(args.sensor_sigmas)
    path = Path(args.output)
    if not args.summary:
        runner = CachedRunner(TorchRunner(load_model("piunet", args.weights).model, torch.device("cpu")))
        for set_name in args.sets:
            evidence, frames_per_stack, lr_side = SETS[set_name]
            scenes = evidence_scenes(evidence, args.split, args.scenes, lr_side, n_frames=frames_per_stack,
                                     skip=args.skip)
            for index, frames, masks, hr in zip(scenes["scene"].tolist(), scenes["frames"], scenes["masks"],
                                                scenes["hr"]):
                row = {"set": set_name, "scene": index, **scene_row(runner, frames, masks, hr, tuple(args.widths))}
                with path.open("a") as file:
                    file.write(json.dumps(row) + "\n")
    summarise(merged([path, *args.also]))


if __name__ == "__main__":
    main()
