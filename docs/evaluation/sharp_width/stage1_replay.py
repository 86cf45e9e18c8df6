"""Stage 1 of docs/evaluation/sharp_width_rule.md: replay the width rule with candidate limits on the rows."""
import itertools, json, sys
from unittest import mock
import numpy as np
sys.path.insert(0, "/work/main/engine")
from misr_engine.inference import psf_width as pw

D = "/work/scratch/sw/"
def rows(name):
    out = {}
    for line in open(D + name):
        r = json.loads(line); out[(r["set"], r["scene"])] = r
    return out
c1, shipped, held = rows("c1_rows.jsonl"), rows("shipped_rows.jsonl"), rows("held_rows.jsonl")

def width(row, misfit):
    k = {float(w): v for w, v in row["k"].items()}
    chosen = pw.choose_width(lambda w: k[w])
    ratio = pw.held_out_ratio(chosen, k[pw.PSF_SIGMA])
    if ratio is not None:
        chosen = pw.narrowed_further(chosen, {float(w): v for w, v in misfit.items()}, ratio)
    return chosen

keys = sorted(set(c1) & set(shipped) & set(held))
base = {key: shipped[key]["score"][str(width(shipped[key], held[key]["held_out"]))] for key in keys}
SETS = ["sensor-0.01", "sensor-0.5", "in-distribution", "mid-blur", "wide-blur"]
WIDE = {"shipped": {}, "limit-0.02": {"WIDENING_LIMIT": 0.02}, "trigger-0.05": {"WIDENING_TRIGGER": 0.05},
        "never": {"WIDER": ()}}
results = []
for sl, ns, (wname, wide) in itertools.product((0.02, 0.05, 0.1), (0.0, 0.3, 0.6), WIDE.items()):
    with mock.patch.multiple(pw, SHARPENING_LIMIT=sl, NARROWING_SLOPE=ns, **wide):
        change = {s: [] for s in SETS}
        for key in keys:
            w = width(c1[key], held[key]["held_out"])
            change[key[0]].append(c1[key]["score"][str(w)] - base[key])
    means = {s: float(np.mean(v)) for s, v in change.items()}
    worst = {s: float(np.min(v)) for s, v in change.items()}
    ok = all(means[s] >= -0.02 for s in ("in-distribution", "mid-blur", "wide-blur"))
    sharp = (means["sensor-0.01"] + means["sensor-0.5"]) / 2
    results.append((ok, sharp, sl, ns, wname, means, worst))
    print(f"SL {sl:<5} NS {ns:<4} wide {wname:13s} {'ok ' if ok else 'no '} sharp {sharp:+.3f} | " +
          " ".join(f"{s} {means[s]:+.3f} ({worst[s]:+.2f})" for s in SETS))
# C1 at 1.2 fixed for reference
fixed = {s: [] for s in SETS}
for key in keys:
    fixed[key[0]].append(c1[key]["score"]["1.2"] - base[key])
print("C1 fixed 1.2: " + " ".join(f"{s} {np.mean(v):+.3f}" for s, v in fixed.items()))
ok = [r for r in results if r[0]]
if ok:
    best = max(ok, key=lambda r: (round(r[1], 6), -abs(r[2] - 0.02) - abs(r[3] - 0.6) - (r[4] != "shipped")))
    print("chosen:", best[2], best[3], best[4], f"sharp {best[1]:+.3f}")
else:
    print("none acceptable")
oracle = {s: [] for s in SETS}; oracle_s = {s: [] for s in SETS}; cw = {s: [] for s in SETS}
for key in keys:
    oracle[key[0]].append(max(c1[key]["score"].values()) - base[key])
    oracle_s[key[0]].append(max(shipped[key]["score"].values()) - base[key])
print("C1 oracle width: " + " ".join(f"{s} {np.mean(v):+.3f}" for s, v in oracle.items()))
print("shipped oracle width: " + " ".join(f"{s} {np.mean(v):+.3f}" for s, v in oracle_s.items()))
with mock.patch.multiple(pw, SHARPENING_LIMIT=0.02, NARROWING_SLOPE=0.6):
    for key in keys:
        if key[0] == "mid-blur":
            k = {float(w): round(v, 3) for w, v in c1[key]["k"].items()}; ks = {float(w): round(v, 3) for w, v in shipped[key]["k"].items()}
            print(key[1], "C1 width", width(c1[key], held[key]["held_out"]), "shipped width", width(shipped[key], held[key]["held_out"]),
                  "C1 k1.2", k[1.2], "k1.6", k[1.6], "shipped k1.2", ks[1.2], "k1.6", ks[1.6])
