"""Replay the engine's PSF-width rule with candidate limits on psf_sharpening_study rows (stage 1 of
docs/evaluation/sharp_width_rule.md, sharp_width_second_rule.md and sharp_width_third_rule.md).

    .venv/bin/python scripts/psf_width_replay.py PREFIX --grid first|second|third
reads PREFIX_c1_rows.jsonl, PREFIX_shipped_rows.jsonl and PREFIX_held_out_rows.jsonl in --rows (default
docs/evaluation/sharp_width) and prints, per candidate, each set's mean change (C1 at the candidate's
width minus the shipped weights at the shipped rule's width) with the worst scene, whether it is
acceptable, and the choice."""
import argparse
import itertools
import json
from pathlib import Path
from unittest import mock

import numpy as np
from misr_engine.inference import psf_width as pw
from psf_held_out_study import engine_width

ROWS = Path(__file__).resolve().parent.parent / "docs" / "evaluation" / "sharp_width"
SETS = ["sensor-0.01", "sensor-0.5", "in-distribution", "mid-blur", "wide-blur"]
GUARDED = ("in-distribution", "mid-blur", "wide-blur")
GRIDS = {
    "first": [dict(SHARPENING_LIMIT=sl, NARROWING_SLOPE=ns, **wide)
              for sl, ns, wide in itertools.product((0.02, 0.05, 0.1), (0.0, 0.3, 0.6),
                                                    ({}, {"WIDENING_LIMIT": 0.02}, {"WIDENING_TRIGGER": 0.05},
                                                     {"WIDER": ()}))],
    "second": [dict(SHARPENING_LIMIT=sl, NARROWING_SLOPE=ns, WIDENING_LIMIT=wl)
               for sl, ns, wl in itertools.product((0.02, 0.05), (0.3, 0.6), (0.05, 0.08, 0.1, 0.12, 0.15))],
    "third": [dict(SHARPENING_LIMIT=sl, NARROWING_SLOPE=ns, WIDENING_LIMIT=wl)
              for sl, ns, wl in itertools.product((0.08, 0.1, 0.12), (0.3, 0.6), (0.12, 0.15, 0.2))],
}
SHIPPED = {name: getattr(pw, name) for name in ("SHARPENING_LIMIT", "NARROWING_SLOPE", "WIDENING_LIMIT")}


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
    c1, shipped, held = (rows(args.rows / f"{args.prefix}_{name}_rows.jsonl") for name in ("c1", "shipped", "held_out"))
    keys = sorted(set(c1) & set(shipped) & set(held))
    base = {key: shipped[key]["score"][str(width(shipped[key], held[key]["held_out"]))] for key in keys}
    results = []
    for limits in GRIDS[args.grid]:
        with mock.patch.multiple(pw, **limits):
            change = {s: [c1[key]["score"][str(width(c1[key], held[key]["held_out"]))] - base[key]
                          for key in keys if key[0] == s] for s in SETS}
        means = {s: float(np.mean(v)) for s, v in change.items()}
        ok = all(means[s] >= -0.02 for s in GUARDED)
        sharp = (means["sensor-0.01"] + means["sensor-0.5"]) / 2
        results.append((ok, sharp, limits))
        print(f"{limits} {'ok' if ok else 'no'} sharp {sharp:+.3f} | "
              + " ".join(f"{s} {means[s]:+.3f} ({min(change[s]):+.2f})" for s in SETS))
    for name, pick in (("C1 oracle width", lambda key: max(c1[key]["score"].values())),
                       ("shipped oracle width", lambda key: max(shipped[key]["score"].values())),
                       ("C1 at 1.2 HR px", lambda key: c1[key]["score"]["1.2"])):
        means = {s: np.mean([pick(key) - base[key] for key in keys if key[0] == s]) for s in SETS}
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
