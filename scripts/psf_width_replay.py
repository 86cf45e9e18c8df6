"""Replay the engine's PSF-width rule with candidate limits on psf_sharpening_study rows (stage 1 of
docs/evaluation/sharp_width_rule.md, sharp_width_second_rule.md, sharp_width_third_rule.md and
psf_limits_stage7_rule.md).

    .venv/bin/python scripts/psf_width_replay.py PREFIX --grid first|second|third|stage7
reads PREFIX_CANDIDATE_rows.jsonl, PREFIX_shipped_rows.jsonl and PREFIX_held_out_rows.jsonl in --rows
(default docs/evaluation/sharp_width) and prints, per candidate, each set's mean change (the candidate
weights' rows at the candidate limits' width minus the shipped weights' at the shipped limits' width) with
the worst scene, whether it is acceptable, and the choice. The candidate weights are C1 (`c1`) for the
first three grids; the shipped weights themselves for `stage7` (only the limits change)."""
import argparse
import itertools
import json
import math
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import numpy as np
from misr_engine.inference import psf_width as pw
from psf_held_out_study import engine_width


class Acceptance(NamedTuple):
    """A grid's rule: each `guarded` set's mean change at least `mean_floor` dB and its worst scene's at
    least `worst_floor`; the candidate weights' rows are PREFIX_`candidate`_rows.jsonl."""
    guarded: tuple[str, ...]
    mean_floor: float
    worst_floor: float
    candidate: str


ROWS = Path(__file__).resolve().parent.parent / "docs" / "evaluation" / "sharp_width"
SHARP = ("sensor-0.01", "sensor-0.5")
GRIDS = {
    "first": [dict(SHARPENING_LIMIT=sl, NARROWING_SLOPE=ns, **wide)
              for sl, ns, wide in itertools.product((0.02, 0.05, 0.1), (0.0, 0.3, 0.6),
                                                    ({}, {"WIDENING_LIMIT": 0.02}, {"WIDENING_TRIGGER": 0.05},
                                                     {"WIDER": ()}))],
    "second": [dict(SHARPENING_LIMIT=sl, NARROWING_SLOPE=ns, WIDENING_LIMIT=wl)
               for sl, ns, wl in itertools.product((0.02, 0.05), (0.3, 0.6), (0.05, 0.08, 0.1, 0.12, 0.15))],
    "third": [dict(SHARPENING_LIMIT=sl, NARROWING_SLOPE=ns, WIDENING_LIMIT=wl)
              for sl, ns, wl in itertools.product((0.08, 0.1, 0.12), (0.3, 0.6), (0.12, 0.15, 0.2))],
    "stage7": [dict(SHARPENING_LIMIT=sl, NARROWING_SLOPE=ns, WIDENING_LIMIT=wl, NEUTRAL_RATIO=nr)
               for sl, ns, wl, nr in itertools.product((0.02, 0.05, 0.08), (0.3, 0.6, 0.9), (0.05, 0.08, 0.12),
                                                       (0.05, 0.2))],
}
ACCEPTANCE = {grid: Acceptance(("in-distribution", "mid-blur", "wide-blur"), -0.02, -math.inf, "c1")
              for grid in ("first", "second", "third")}
ACCEPTANCE["stage7"] = Acceptance(("in-distribution", "mid-blur", "wide-blur", "surface-change"), -0.01, -0.1,
                                  "shipped")
SHIPPED = {name: getattr(pw, name)
           for name in ("SHARPENING_LIMIT", "NARROWING_SLOPE", "WIDENING_LIMIT", "NEUTRAL_RATIO")}


def rows(path: Path) -> dict:
    return {(r["set"], r["scene"]): r for r in map(json.loads, path.read_text().splitlines())}


def width(row: dict, misfit: dict) -> float:
    """The engine's width for a row and its held-out `misfit` under the limits patched in `psf_width`."""
    return engine_width({**row, "held_out": misfit}, pw.NEUTRAL_RATIO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefix")
    parser.add_argument("--grid", choices=sorted(GRIDS), required=True)
    parser.add_argument("--rows", type=Path, default=ROWS, help="the folder of the rows")
    args = parser.parse_args()
    rule = ACCEPTANCE[args.grid]
    shipped, held = (rows(args.rows / f"{args.prefix}_{name}_rows.jsonl") for name in ("shipped", "held_out"))
    candidate = (shipped if rule.candidate == "shipped"
                 else rows(args.rows / f"{args.prefix}_{rule.candidate}_rows.jsonl"))
    keys = sorted(set(candidate) & set(shipped) & set(held))
    sets = list(dict.fromkeys(key[0] for key in keys))
    base = {key: shipped[key]["score"][str(width(shipped[key], held[key]["held_out"]))] for key in keys}
    results = []
    for limits in GRIDS[args.grid]:
        with mock.patch.multiple(pw, **limits):
            change = {s: [candidate[key]["score"][str(width(candidate[key], held[key]["held_out"]))] - base[key]
                          for key in keys if key[0] == s] for s in sets}
        means = {s: float(np.mean(v)) for s, v in change.items()}
        ok = all(means[s] >= rule.mean_floor and min(change[s]) >= rule.worst_floor for s in rule.guarded)
        sharp = float(np.mean([means[s] for s in SHARP]))
        results.append((ok, sharp, limits))
        print(f"{limits} {'ok' if ok else 'no'} sharp {sharp:+.3f} | "
              + " ".join(f"{s} {means[s]:+.3f} ({min(change[s]):+.2f})" for s in sets))
    for name, pick in ((f"{rule.candidate} oracle width", lambda key: max(candidate[key]["score"].values())),
                       ("shipped oracle width", lambda key: max(shipped[key]["score"].values())),
                       (f"{rule.candidate} at 1.2 HR px", lambda key: candidate[key]["score"]["1.2"])):
        means = {s: np.mean([pick(key) - base[key] for key in keys if key[0] == s]) for s in sets}
        print(f"{name}: " + " ".join(f"{s} {mean:+.3f}" for s, mean in means.items()))
    acceptable = [r for r in results if r[0] and r[1] > 0.1]
    if not acceptable:
        print("none acceptable")
        return
    nearest = lambda limits: sum(abs(limits[n] - SHIPPED[n]) for n in limits if n in SHIPPED)  # noqa: E731
    best = max(acceptable, key=lambda r: (round(r[1], 6), -nearest(r[2])))
    print(f"chosen: {best[2]} (sharp {best[1]:+.3f})")


if __name__ == "__main__":
    main()
