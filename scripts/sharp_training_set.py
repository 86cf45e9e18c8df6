"""A training-set candidate for issue 14 (item 4): `make dataset`'s training stacks plus stacks of
a sharp sensor (every frame of a stack blurred by 0.01-0.5 HR px per axis, no halo; the training
ranges otherwise), so that a continued training meets sharp frames. Built from the train window
only, with its own seed; written beside the plain set. The decision rule is
docs/evaluation/sharp_training_rule.md."""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
from misr_engine.datasets.cards import MAKE_DATASET_TRAIN, simulated_set
from misr_engine.datasets.samples import build_samples, save_samples

SHARP_PSF_SIGMA = (0.01, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plain", default="data/s2_train.npz", help="make dataset's training set")
    parser.add_argument("--count", type=int, default=400, help="sharp stacks added")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("-o", "--output", default="data/s2_train_sharp.npz")
    args = parser.parse_args()
    params = MAKE_DATASET_TRAIN
    spec = simulated_set(None, "train", args.count, params["lr_size"], params["frames"], args.seed)
    conditions = replace(spec.conditions, psf_sigma=SHARP_PSF_SIGMA, halo_probability=0.0)
    sharp = build_samples(list(spec.paths), spec.window, args.count, spec.lr_size, spec.frames, args.seed,
                          conditions=conditions, workers=args.workers, featureless_keep=spec.featureless_keep,
                          registered=spec.registered)
    with np.load(args.plain) as plain:
        merged = {key: plain[key] if plain[key].ndim == 0 else np.concatenate([plain[key], sharp[key]])
                  for key in plain.files if key in sharp}
    merged["registered"] = np.array(spec.registered)
    with open(args.output, "wb") as handle:
        save_samples(handle, merged)
    print(f"wrote {args.output}: {len(merged['frames'])} stacks, {args.count} of them sharp {SHARP_PSF_SIGMA}")


if __name__ == "__main__":
    main()
