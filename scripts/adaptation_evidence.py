"""The evidence table of issue 15 (item 5), on TEST scenes: supervised and self-supervised
weights, each with and without test-time fine-tuning at its defaults, IBP and registration +
Wiener, on data like and unlike the training data, with 95% paired bootstrap intervals.

Rows go to a JSON-lines file, scene by scene (rerun to resume; rerun with other --weights to
score new weights: rows are keyed by the weights' sha256); `--table` writes the Markdown table.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/adaptation_evidence.py \\
        --output docs/evaluation/adaptation/evidence.jsonl --table docs/evaluation/adaptation/evidence.md
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch

from misr_engine.evaluation.adaptation import ADAPTATION_SETS, EVIDENCE_SETS, Results, evidence_scenes, run_methods, table
from misr_engine.evaluation.baselines import ibp, registered_mean_wiener
from misr_engine.inference.finetune import DEFAULT_LEARNING_RATE, DEFAULT_STEPS, FineTuneSettings
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.registry import model_spec
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack

CPU = torch.device("cpu")


def network(model: torch.nn.Module, ttf: FineTuneSettings | None = None):
    def run(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return super_resolve(Stack.in_memory(frames, masks), model, CPU, ttf_steps=ttf or 0)[0]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options = model_spec("piunet").weights_options
    parser.add_argument("--weights", default=str(options[0].path), help="supervised weights")
    parser.add_argument("--ssl-weights", default=str(options[1].path), help="self-supervised weights")
    parser.add_argument("--sets", nargs="+", default=list(ADAPTATION_SETS))
    parser.add_argument("--split", default="test")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--lr-size", type=int, default=48)
    parser.add_argument("--ttf-steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--ttf-learning-rate", type=float, default=DEFAULT_LEARNING_RATE)
    parser.add_argument("--output", required=True, help="JSON-lines results (appended; resumable)")
    parser.add_argument("--table", help="write the Markdown table here")
    parser.add_argument("--only-table", action="store_true", help="do not run, only write the table")
    args = parser.parse_args()
    results = Results(args.output)
    ttf = FineTuneSettings(args.ttf_steps, args.ttf_learning_rate)
    ttf_tag = f"TTF {ttf.steps} steps, lr {ttf.learning_rate:g}"
    methods = {}
    for kind, path in (("supervised", args.weights), ("self-supervised", args.ssl_weights)):
        if not Path(path).is_file():
            print(f"{kind}: no weights at {path}, its rows are not scored", flush=True)
            continue
        loaded = load_model("piunet", path)
        methods[f"{kind} [{loaded.sha256[:12]}]"] = network(loaded.model)
        methods[f"{kind} [{loaded.sha256[:12]}] + {ttf_tag}"] = network(loaded.model, ttf)
    methods.update({"IBP": ibp, "registration + Wiener": registered_mean_wiener})
    if not args.only_table:
        for set_name in args.sets:
            scenes = evidence_scenes(set_name, args.split, args.scenes, args.lr_size)
            run_methods(results, f"{set_name} ({args.split})", scenes, methods,
                        log=lambda line: print(line, flush=True))
    if args.table:
        Path(args.table).write_text(markdown(results, args, list(methods)))


def markdown(results: Results, args: argparse.Namespace, methods: list[str]) -> str:
    """Per set: every method's mean cPSNR with its 95% interval, its difference to the
    supervised weights (paired), and what fine-tuning adds to the same weights (paired)."""
    lines = [f"{args.split.capitalize()} scenes ({args.split} window), {args.scenes} per set, {args.lr_size} x {args.lr_size} LR, "
             f"9 frames; cPSNR in dB on reflectance; [95% paired bootstrap interval over scenes]. "
             f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}.", ""]
    reference = methods[0]
    for set_name in args.sets:
        key = f"{set_name} ({args.split})"
        rows = table(results, key, methods, reference)
        if not rows or not rows[0]["scenes"]:
            continue
        lines += [f"### {set_name}: {EVIDENCE_SETS[set_name].description}", "",
                  "| method | cPSNR (dB) | vs supervised | fine-tuning's gain | better than supervised |",
                  "|---|---:|---:|---:|---:|"]
        for row in rows:
            method = row["method"]
            gain = ""
            if "+ TTF" in method:
                base = method.split(" + TTF")[0]
                base_rows = {r["method"]: r for r in table(results, key, [method, base], base)}
                g = base_rows[method]
                gain = f"{g['vs_reference']:+.2f} [{g['vs_low']:+.2f}, {g['vs_high']:+.2f}]"
            versus = "" if method == reference else \
                f"{row['vs_reference']:+.2f} [{row['vs_low']:+.2f}, {row['vs_high']:+.2f}]"
            lines.append(f"| {method} | {row['cpsnr']:.2f} [{row['cpsnr_low']:.2f}, {row['cpsnr_high']:.2f}] | "
                         f"{versus} | {gain} | {'' if method == reference else str(row['better']) + '/' + str(row['scenes'])} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
