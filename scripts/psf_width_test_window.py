"""The engine's per-scene PSF width scored once on the test window, after its choice on validation.

Per scene of each set named: cPSNR of the engine as shipped, of the engine `--against` a former
choice (`fixed`: the 1.2 HR px width of before 2026-12-05; `narrowing`: narrowed per scene, never
widened, as on 2026-12-05 midday; `flat-limits`: narrowed and widened with a limit of 0.02 on k at
every width, as at 8cf4aac; `k-only`: k's choice without the held-out misfit, as at 4f79ee7;
`narrowed-only`: the held-out misfit asked only where k narrowed, as at 6f6b637; the fallback when
no narrower width meets its limit is the current one, which picks the narrowest when k falls with
the width) and of the strongest classical pipeline. Rows go
to a JSON-lines file; each set's line gives the paired mean difference with its 95% bootstrap
interval, the scenes moved, and the margin over the strongest classical pipeline. Sets: the
evidence sets (``evaluation.adaptation``), `sensor-0.01` / `sensor-0.5` (one sensor of 0.01 / 0.5
HR px) and psf_width_study's `mid-blur` / `wide-blur` (as psf_sharpening_study registers them), also
as `unseen-bands-mid-blur` / `unseen-bands-wide-blur`. With `--stated-mtf M` the engine as shipped is
compared instead with the same engine told the sensor's MTF (``--sensor-mtf M``: the back-projection's
PSF width stated, not chosen), a user's option: `--split validation` for the figures a choice may read.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/psf_width_test_window.py --against narrowing --output rows.jsonl \\
        --sets mid-blur wide-blur unseen-bands-mid-blur in-distribution
"""

from __future__ import annotations

import argparse
import json
import math
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import psf_sharpening_study
import psf_width_study
import torch
from misr_engine.evaluation import adaptation
from misr_engine.evaluation.adaptation import evidence_scenes, paired_interval, scene_score
from misr_engine.evaluation.baselines import BASELINES, STRONGEST_CANDIDATES
from misr_engine.imaging.mtf import psf_sigma_from_mtf
from misr_engine.inference import psf_width, tiled
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack

FOUR_FRAMES = ("out-of-range", "unseen-bands-out-of-range")
FORMER = {"fixed": lambda: mock.patch.object(tiled, "SCENE_PSF_WIDTH", False),
          "narrowing": lambda: mock.patch.multiple(psf_width, WIDER=(), NARROWING_SLOPE=0.0),
          "flat-limits": lambda: mock.patch.multiple(psf_width, NARROWING_SLOPE=0.0, WIDENING_LIMIT=0.02),
          "k-only": lambda: mock.patch.object(psf_width, "held_out_ratio", lambda chosen, engine_k: None),
          "narrowed-only": lambda: mock.patch.object(psf_width, "NEUTRAL_RATIO", math.inf)}
"""The former choices the engine is compared with."""


def add_sets() -> None:
    """Register the sharpening study's sets (`sensor-0.01`, `sensor-0.5`, the blurred sets) and the
    blurred sets' unseen-band twins as evidence sets."""
    psf_sharpening_study.add_sets([0.01, 0.5])
    sets = adaptation.EVIDENCE_SETS
    for name, conditions in psf_width_study.BLURRED.items():
        sets[f"unseen-bands-{name}"] = replace(sets["unseen-bands"], conditions=conditions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", required=True)
    against = parser.add_mutually_exclusive_group(required=True)
    against.add_argument("--against", choices=sorted(FORMER))
    against.add_argument("--stated-mtf", type=float, help="compare with the engine told this MTF at Nyquist")
    parser.add_argument("--split", choices=["test", "validation"], default="test")
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--output", type=Path, required=True, help="JSON-lines rows (appended)")
    args = parser.parse_args()
    add_sets()
    model = load_model("piunet").model
    other = args.against or f"mtf-{args.stated_mtf:g}"
    stated = psf_sigma_from_mtf(args.stated_mtf) if args.stated_mtf is not None else None
    for set_name in args.sets:
        scenes = evidence_scenes(set_name, args.split, args.scenes, 64, 4 if set_name in FOUR_FRAMES else 9)
        rows = []
        for index, (frames, masks, hr) in enumerate(zip(scenes["frames"], scenes["masks"], scenes["hr"])):
            row = {"set": set_name, "split": args.split, "scene": index}
            for name in ("shipped", other):
                with ExitStack() as stack:
                    if name in FORMER:
                        stack.enter_context(FORMER[name]())
                    sigma = stated if name == other else None
                    sr = super_resolve(Stack.in_memory(frames, masks), model, torch.device("cpu"), psf_sigma=sigma)[0]
                row[name] = scene_score(sr, hr)
            row["classical"] = max(scene_score(BASELINES[name](frames, masks), hr) for name in STRONGEST_CANDIDATES)
            with args.output.open("a") as file:
                file.write(json.dumps(row) + "\n")
            rows.append(row)
        gain = paired_interval([r["shipped"] for r in rows], [r[other] for r in rows])
        before = [r[other] - r["classical"] for r in rows]
        after = [r["shipped"] - r["classical"] for r in rows]
        print(f"{set_name} ({len(rows)} {args.split} scenes): shipped - {other} {gain[0]:+.3f} [{gain[1]:+.3f}, "
              f"{gain[2]:+.3f}], {sum(abs(r['shipped'] - r[other]) > 0.01 for r in rows)} scenes moved; margin "
              f"over the strongest classical {np.mean(before):+.3f} -> {np.mean(after):+.3f} (worst {min(before):+.3f} "
              f"-> {min(after):+.3f}, lost {sum(x < 0 for x in before)} -> {sum(x < 0 for x in after)})", flush=True)


if __name__ == "__main__":
    main()
