"""How far the per-frame noise estimate (``Normalisation.frame_noise``) spreads when every frame is
equally noisy: the largest ratio of a frame's estimate to the median frame's, per validation scene.
It bounds how low ``normalisation.NOISY_FRAME_RATIO`` can go without naming frames that are merely
sharper (the estimate also sees some of a sharp frame's detail).

    OMP_NUM_THREADS=1 PYTHONPATH=engine .venv/bin/python scripts/frame_noise_spread.py
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
from misr_engine.datasets.samples import build_samples
from misr_engine.datasets.sentinel2 import (
    NATIVE_PIXEL_M,
    S2_BANDS,
    SPLITS,
    scaled_window,
    sentinel2_band_paths,
)
from misr_engine.datasets.simulate import SENTINEL2, Degradation
from misr_engine.evaluation.baselines import engine_prepared
from misr_engine.inference.normalisation import Normalisation

CONDITIONS = {
    "training blurs, 0.2% noise in every frame": replace(Degradation(), noise_fraction=(0.002, 0.002),
                                                           change_probability=0.0),
    "training blurs, 1% noise in every frame": replace(Degradation(), noise_fraction=(0.01, 0.01),
                                                         change_probability=0.0),
    "Sentinel-2-like blurs, 0.5% noise in every frame": replace(SENTINEL2, noise_fraction=(0.005, 0.005)),
    "training blurs, 0.1% noise in every frame (the training's least)": replace(
        Degradation(), noise_fraction=(0.001, 0.001), change_probability=0.0),
    "training blurs, low contrast (0.1-0.3), 0.1% noise in every frame": replace(
        Degradation(), noise_fraction=(0.001, 0.001), change_probability=0.0, contrast=(0.1, 0.3)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--conditions", nargs="+", type=int, help="indices into CONDITIONS (default: all)")
    args = parser.parse_args()
    window = scaled_window(SPLITS["validation"], NATIVE_PIXEL_M)
    for index, (name, conditions) in enumerate(CONDITIONS.items()):
        if args.conditions and index not in args.conditions:
            continue
        scenes = build_samples(sentinel2_band_paths(S2_BANDS), window, args.scenes, 64, args.frames, 41,
                               conditions=conditions, workers=1, featureless_keep=0.0, registered=False)
        ratios = []
        for frames, masks in zip(scenes["frames"], scenes["masks"]):
            prepared = engine_prepared(frames, masks)
            noise = np.asarray(Normalisation.of_registered([(prepared.frames, prepared.masks)],
                                                           prepared.phases).frame_noise)
            noise = noise[noise > 0]
            ratios.append(noise.max() / np.median(noise))
        print(f"{name}, {args.frames} frames: noisiest frame / median frame per scene: median {np.median(ratios):.2f}, "
              f"90% {np.quantile(ratios, 0.9):.2f}, max {np.max(ratios):.2f}", flush=True)


if __name__ == "__main__":
    main()
