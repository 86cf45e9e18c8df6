"""Choose test-time fine-tuning's defaults on VALIDATION scenes (issue 15 item 5).

For every scene of the chosen sets (validation window; in distribution and out of the training
ranges), the SR without fine-tuning is scored, then the scene is fine-tuned once per setting
(learning rate, latent weight) and the SR scored after each of the listed step counts (one
run per setting: the checkpoints of a longer run). Rows go to a JSON-lines file (resumable);
`--summary` prints the mean change against no fine-tuning with 95% paired bootstrap intervals.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/ttf_study.py --weights W --output docs/evaluation/ttf_validation.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import time
from functools import cache

import torch

from misr_engine.evaluation.adaptation import Results, evidence_scenes, mean_interval, paired_interval, scene_score
from misr_engine.inference.finetune import (DEFAULT_LEARNING_RATE, LATENT_LEARNING_RATE, LATENT_WEIGHT,
                                            FineTuneSettings, finetune_on_scene)
from misr_engine.inference.held_out import held_out_misfits
from misr_engine.inference.psf_width import WIDTHS, kernel_start_width
from misr_engine.inference.tiled import finetuning_inputs, super_resolve
from misr_engine.models.backprojection import PSF_SIGMA
from misr_engine.models.kernel_prior import load_kernel_prior
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack

CPU = torch.device("cpu")
MIN_INTERVAL_SCENES = 5  # a bootstrap over fewer scenes is little more than their range


def setting_name(learning_rate: float, latent_weight: float, steps: int,
                 latent_learning_rate: float = LATENT_LEARNING_RATE, kernel_start: str = "default",
                 width: str = "rechosen") -> str:
    """The row's method name (the latent learning rate, the kernels' start and the back-projection's
    width only where they are not the defaults)."""
    latent = "" if latent_learning_rate == LATENT_LEARNING_RATE else f" zlr={latent_learning_rate:g}"
    start = "" if kernel_start == "default" else f" z0={kernel_start}"
    kept = "" if width == "rechosen" else f" width={width}"
    return f"ttf lr={learning_rate:g} zw={latent_weight:g}{latent}{start}{kept} steps={steps}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="piunet")
    parser.add_argument("--weights", help="weights file (default: the shipped ones)")
    parser.add_argument("--sets", nargs="+", default=["out-of-range", "in-distribution"])
    parser.add_argument("--split", default="validation")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first SKIP scenes of each set (fresh scenes for a new choice)")
    parser.add_argument("--lr-size", type=int, default=48)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[DEFAULT_LEARNING_RATE])
    parser.add_argument("--latent-weights", type=float, nargs="+", default=[LATENT_WEIGHT])
    parser.add_argument("--latent-learning-rate", type=float, default=LATENT_LEARNING_RATE)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--kernel-starts", nargs="+", choices=["default", "scene", "held-out-wider"],
                        default=["held-out-wider"],
                        help="the frames' kernels start at the engine's PSF width ('default', as the engine did "
                             "before 2026-12-06), at the width the plain run chose for the scene, or at "
                             "psf_width.kernel_start_width (as the engine does)")
    parser.add_argument("--widths", nargs="+", choices=["rechosen", "kept"], default=["kept"],
                        help="the back-projection's width after fine-tuning: chosen again from the tuned network "
                             "(as the engine did before 2026-12-06) or kept at the plain run's choice (as it does)")
    parser.add_argument("--output", required=True, help="JSON-lines results (appended; resumable)")
    parser.add_argument("--summary", action="store_true", help="only print the summary of --output")
    parser.add_argument("--against", metavar="METHOD",
                        help="also print each method's mean gain over the sets and its paired interval against "
                             "METHOD, pooled over every scene of the sets")
    args = parser.parse_args()
    results = Results(args.output)
    if not args.summary:
        run(args, results)
    summarise(results, args.sets)
    if args.against:
        compare(results, args.sets, args.against)


def run(args: argparse.Namespace, results: Results) -> None:
    loaded = load_model(args.model, args.weights)
    prior = load_kernel_prior()
    tag = loaded.sha256[:12]
    for set_name in args.sets:
        scenes = evidence_scenes(set_name, args.split, args.scenes, args.lr_size, skip=args.skip)
        for index, frames, masks, hr in zip(scenes["scene"].tolist(), scenes["frames"], scenes["masks"], scenes["hr"]):
            stack = Stack.in_memory(frames, masks)
            key = f"{set_name} [{tag}]"
            if not results.has(key, "plain", index):
                chosen: list[float] = []
                score = scene_score(super_resolve(stack, loaded.model, CPU, on_psf_sigma=chosen.append)[0], hr)
                results.add({"set": key, "method": "plain", "scene": index, "cpsnr": score, "psf_sigma": chosen[0]})
            scene_width = next(r["psf_sigma"] for r in results.rows
                               if r["set"] == key and r["method"] == "plain" and r["scene"] == index)
            windows, phases = finetuning_inputs(stack)
            held_out_start = cache(lambda: kernel_start_width(held_out_misfits(windows, phases, WIDTHS)))
            starts = {"default": lambda: PSF_SIGMA, "scene": lambda: scene_width, "held-out-wider": held_out_start}
            for learning_rate, latent_weight, start in itertools.product(args.learning_rates, args.latent_weights,
                                                                         args.kernel_starts):
                names = {(s, w): setting_name(learning_rate, latent_weight, s, args.latent_learning_rate, start, w)
                         for s in args.steps for w in args.widths}
                if all(results.has(key, n, index) for n in names.values()):
                    continue
                started = time.perf_counter()

                def checkpoint(step: int, tuned: torch.nn.Module) -> None:
                    for width in args.widths:
                        name = names.get((step, width))
                        if name is None or results.has(key, name, index):
                            continue
                        seconds = time.perf_counter() - started
                        kept = scene_width if width == "kept" else None
                        score = scene_score(super_resolve(stack, tuned, CPU, psf_sigma=kept)[0], hr)
                        results.add({"set": key, "method": name, "scene": index, "cpsnr": score,
                                     "seconds": round(seconds, 1)})
                        print(f"{key} scene {index} {name}: {score:.3f} dB ({seconds:.0f} s)", flush=True)
                settings = FineTuneSettings(max(args.steps), learning_rate, args.latent_learning_rate, latent_weight)
                finetune_on_scene(loaded.model, windows, phases, settings, CPU, prior, checkpoint=checkpoint,
                                  kernel_sigma=starts[start]())


def set_keys(results: Results, sets: list[str]) -> list[str]:
    """The row keys ("set [weights]") of the named sets."""
    return sorted({r["set"] for r in results.rows if any(r["set"].startswith(s) for s in sets)})


def summarise(results: Results, sets: list[str]) -> None:
    for key in set_keys(results, sets):
        plain = results.scores(key, "plain")
        print(f"\n{key}: plain {sum(plain.values()) / max(len(plain), 1):.3f} dB over {len(plain)} scenes")
        for method in sorted({r["method"] for r in results.rows if r["set"] == key} - {"plain"}):
            scores = results.scores(key, method)
            common = sorted(set(scores) & set(plain))
            mean, low, high = paired_interval([scores[i] for i in common], [plain[i] for i in common])
            interval = f"[{low:+.3f}, {high:+.3f}]" if len(common) >= MIN_INTERVAL_SCENES else "(no interval)"
            print(f"  {method:40s} {mean:+.3f} dB {interval} ({len(common)} scenes)")


def compare(results: Results, sets: list[str], against: str) -> None:
    """The criterion of a choice over several sets: each method's mean over the sets of its mean gain
    over no fine-tuning, and its gain minus `against`'s, scene by scene, pooled over the sets."""
    keys = set_keys(results, sets)
    print(f"\nover {len(keys)} sets, against {against}:")
    for method in sorted({r["method"] for r in results.rows if r["set"] in keys} - {"plain"}):
        gains, differences = [], []
        for key in keys:
            plain, scores, base = (results.scores(key, m) for m in ("plain", method, against))
            common = sorted(set(plain) & set(scores) & set(base))
            if not common:
                break
            gains.append(sum(scores[i] - plain[i] for i in common) / len(common))
            differences += [scores[i] - base[i] for i in common]
        else:
            mean, low, high = mean_interval(differences)
            print(f"  {method:40s} mean gain {sum(gains) / len(gains):+.3f} dB; against: {mean:+.3f} "
                  f"[{low:+.3f}, {high:+.3f}] ({len(differences)} scenes)")


if __name__ == "__main__":
    main()
