"""The back-projection's PSF width per scene from a held-out frame's misfit (``inference.held_out``).

For every scene of the chosen sets, the held-out misfit at each of the engine's widths (the frames
prepared as the engine prepares them, the scene as one window). Rows go to a JSON-lines file;
`--summary` reads them beside psf_sharpening_study's rows of the same scenes (`--scores`: cPSNR and
k at every width, the strongest classical pipeline) and prints, per candidate rule of
docs/evaluation/psf_width_held_out_rule.md, each set's mean gain over k's choice (the engine before
it), the worst scene's, and the margin over the strongest classical pipeline. Sets as
psf_sharpening_study registers them.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/psf_held_out_study.py --sets sensor-0.01 in-distribution \\
        --skip 12 --scenes 12 --output held_out_rows.jsonl
    .venv/bin/python scripts/psf_held_out_study.py --output held_out_rows.jsonl --summary \\
        --scores docs/evaluation/psf_width/target_line_validation_rows.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import psf_sharpening_study
from detail_gate_study import SETS
from misr_engine.evaluation import baselines as B
from misr_engine.evaluation.adaptation import evidence_scenes
from misr_engine.inference import psf_width
from misr_engine.inference.held_out import held_out_misfits
from misr_engine.inference.psf_width import WIDTHS
from misr_engine.models.backprojection import PSF_SIGMA

GUARD_SETS = ("in-distribution", "coarse-bands", "surface-change", "low-contrast", "out-of-range")
GAIN_SETS = ("sensor-0.01", "sensor-0.5", "mid-blur", "wide-blur")
ORDER = sorted(WIDTHS)


def k_choice(row: dict) -> float:
    return psf_width.choose_width(lambda width: row["k"][str(float(width))])


def argmin(row: dict, ratio: float = 0.0) -> float:
    """The width of least held-out misfit; the engine's unless it beats the engine's by `ratio`."""
    misfit = {float(w): m for w, m in row["held_out"].items()}
    best = min(ORDER, key=misfit.__getitem__)
    return best if misfit[best] < (1.0 - ratio) * misfit[PSF_SIGMA] else PSF_SIGMA


def outward(width: float) -> float:
    """One width further from the engine's (the same at the engine's or at either end)."""
    at = ORDER.index(width)
    if width > PSF_SIGMA:
        return ORDER[min(at + 1, len(ORDER) - 1)]
    return ORDER[max(at - 1, 0)] if width < PSF_SIGMA else width


def agree(row: dict) -> float:
    """The argmin where it lies on the side of the engine's width that k points to, else k's choice."""
    chosen, found = k_choice(row), argmin(row)
    side = np.sign(chosen - PSF_SIGMA) or -np.sign(row["k"][str(PSF_SIGMA)])
    return found if np.sign(found - PSF_SIGMA) == side and side != 0 else chosen


def further(row: dict, ratio: float = 0.0, sides: tuple[int, ...] = (-1, 1)) -> float:
    """k's choice, or where it is off the engine's width (on one of `sides`: -1 narrower, 1 wider), the
    held-out argmin if it lies further out on the same side and its misfit is below that at k's
    choice by more than `ratio` of it (second rule)."""
    chosen, found = k_choice(row), argmin(row)
    side = int(np.sign(chosen - PSF_SIGMA))
    misfit = {float(w): m for w, m in row["held_out"].items()}
    beyond = side in sides and side != 0 and np.sign(found - chosen) == side
    return found if beyond and misfit[found] < (1.0 - ratio) * misfit[chosen] else chosen


def second_candidates() -> dict[str, Callable[[dict], float]]:
    """The candidates of docs/evaluation/psf_width_held_out_further_rule.md."""
    rules: dict[str, Callable[[dict], float]] = {}
    for ratio in (0.0, 0.005, 0.01, 0.02):
        rules[f"further-{ratio:g}"] = lambda row, r=ratio: further(row, r)
        rules[f"further-narrower-{ratio:g}"] = lambda row, r=ratio: further(row, r, (-1,))
        rules[f"further-outward-{ratio:g}"] = lambda row, r=ratio: outward(further(row, r)) \
            if further(row, r) > k_choice(row) else further(row, r)
    return rules


def engine_width(row: dict, neutral_ratio: float = math.inf) -> float | None:
    """The engine's width for a row (k's choice, then the held-out misfit where ``psf_width.held_out_ratio``
    asks it) with `neutral_ratio` as NEUTRAL_RATIO (math.inf: the engine before the third rule); None where
    k's choice needs the k of a wider width the row lacks (no held-out step applies there)."""
    try:
        chosen = k_choice(row)
    except KeyError:
        return None
    with mock.patch.object(psf_width, "NEUTRAL_RATIO", neutral_ratio):
        ratio = psf_width.held_out_ratio(chosen, row["k"][str(PSF_SIGMA)])
    misfit = {float(w): m for w, m in row["held_out"].items()}
    return chosen if ratio is None else psf_width.narrowed_further(chosen, misfit, ratio)


def third_candidates() -> dict[str, Callable[[dict], float | None]]:
    """The candidates of docs/evaluation/psf_width_held_out_neutral_rule.md."""
    return {f"neutral-{ratio:g}": lambda row, r=ratio: engine_width(row, r)
            for ratio in (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)}


def candidates() -> dict[str, Callable[[dict], float]]:
    """The candidates of docs/evaluation/psf_width_held_out_rule.md."""
    rules: dict[str, Callable[[dict], float]] = {"argmin": argmin}
    for ratio in (0.005, 0.01, 0.02, 0.05):
        rules[f"argmin-{ratio:g}"] = lambda row, r=ratio: argmin(row, r)
    for name, rule in list(rules.items()):
        rules[f"outward{name[6:]}"] = lambda row, rule=rule: outward(rule(row))
    rules["agree"] = agree
    return rules


def summarise(rows: list[dict], rules: dict[str, Callable[[dict], float | None]],
              baseline: Callable[[dict], float | None] = k_choice) -> None:
    """Per rule and set: the mean gain over `baseline`'s width, the worst, the scenes moved, and the
    margin over the strongest classical pipeline before and after (over the scenes whose baseline
    width was scored; a width of None is the baseline's, unscored)."""
    for name, rule in rules.items():
        print(name)
        gains_of_sets = []
        for set_name in [*GAIN_SETS, *GUARD_SETS]:
            own = [row for row in rows if row["set"] == set_name]
            if not own:
                continue
            picks = [(baseline(row), rule(row)) for row in own]
            gains = [0.0 if a == b else row["score"][str(a)] - row["score"][str(b)] for row, (b, a) in zip(own, picks)]
            scored = [(row, b, a) for row, (b, a) in zip(own, picks) if b is not None]
            before = [row["score"][str(b)] - row["classical"] for row, b, _ in scored]
            after = [row["score"][str(a)] - row["classical"] for row, _, a in scored]
            if set_name in GAIN_SETS:
                gains_of_sets.append(np.mean(gains))
            margins = (f"margin {np.mean(before):+.3f} -> {np.mean(after):+.3f}, worst {min(before):+.3f} -> "
                       f"{min(after):+.3f}, lost {sum(b < 0 for b in before)} -> {sum(a < 0 for a in after)}"
                       if scored else "no margin (no baseline width scored)")
            print(f"   {set_name} ({len(own)}, {len(scored)} scored): gain {np.mean(gains):+.3f} (worst "
                  f"{min(gains):+.3f}, moved {sum(b != a for b, a in picks)}); {margins}")
        print(f"   mean gain over {', '.join(GAIN_SETS)}: {np.mean(gains_of_sets):+.3f}")


def joined(held_out: Path, scores: list[Path]) -> list[dict]:
    rows = {(r["set"], r["scene"]): r for path in scores for r in map(json.loads, path.read_text().splitlines())}
    out = []
    for row in map(json.loads, held_out.read_text().splitlines()):
        if (row["set"], row["scene"]) in rows:
            out.append({**rows[(row["set"], row["scene"])], "held_out": row["held_out"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=[*GAIN_SETS, *GUARD_SETS])
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--skip", type=int, default=0, help="leave out the first SKIP scenes of each set")
    parser.add_argument("--output", type=Path, required=True, help="JSON-lines rows (appended)")
    parser.add_argument("--summary", action="store_true", help="only print the summary of --output")
    parser.add_argument("--scores", type=Path, nargs="*", default=[],
                        help="psf_sharpening_study rows of the same scenes (cPSNR and k per width)")
    parser.add_argument("--second", action="store_true", help="the second rule's candidates")
    parser.add_argument("--third", action="store_true", help="the third rule's candidates (over the shipped width)")
    args = parser.parse_args()
    psf_sharpening_study.add_sets([0.01, 0.5])
    if not args.summary:
        for set_name in args.sets:
            evidence, frames_per_stack, lr_side = SETS[set_name]
            scenes = evidence_scenes(evidence, args.split, args.scenes, lr_side, n_frames=frames_per_stack,
                                     skip=args.skip)
            for index, frames, masks in zip(scenes["scene"].tolist(), scenes["frames"], scenes["masks"]):
                prepared = B.engine_prepared(frames, masks)
                found = held_out_misfits([(prepared.frames, prepared.masks)], prepared.phases, WIDTHS)
                misfit = {str(w): m for w, m in found.items()}
                with args.output.open("a") as file:
                    file.write(json.dumps({"set": set_name, "scene": index, "held_out": misfit}) + "\n")
    if args.third:
        summarise(joined(args.output, args.scores), third_candidates(), engine_width)
    else:
        summarise(joined(args.output, args.scores), second_candidates() if args.second else candidates())


if __name__ == "__main__":
    main()
