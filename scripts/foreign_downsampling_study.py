"""How the engine fares on stacks made by simulators unlike its own (VALIDATION HR crops).

Users and benchmarks make LR stacks in other ways than ``datasets.simulate``: plain 3 x 3 pixel
averaging, antialiased bicubic downsampling (the usual SR benchmark), point sampling (one HR pixel
per LR pixel, strongly aliased), a Gaussian blur then pixel averaging (`gaussS`), or a Gaussian
blur then point sampling (`gausspointS`, about what scikit-image's antialiased rescale does). Each validation HR crop
(``misr evaluate``'s in-distribution scenes, 64 x 64 LR) is moved by random sub-pixel shifts (up
to one LR pixel; the first frame unmoved), downsampled x3 that way, with Gaussian noise of
`--noise` times its level, 9 clear frames. Printed per scene and per set: the engine's cPSNR with
its PSF width chosen per scene (``inference.psf_width``) and with the fixed 1.2 HR px, and the
margin of each over the strongest classical pipeline.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/foreign_downsampling_study.py --kinds area bicubic \\
        | tee docs/evaluation/psf_width/foreign_downsampling.log
"""

from __future__ import annotations

import argparse
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from misr_engine import SCALE
from misr_engine.evaluation.adaptation import evidence_scenes, scene_score
from misr_engine.evaluation.baselines import BASELINES, STRONGEST_CANDIDATES
from misr_engine.evaluation.statistics import bootstrap_mean
from misr_engine.inference import tiled
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.weights import load_model
from misr_engine.rasters.stack import Stack
from scipy import ndimage

KINDS = ("area", "bicubic", "point", "gauss1.0", "gausspoint1.0")


def downsample(hr: np.ndarray, kind: str) -> np.ndarray:
    """`hr` (3h, 3w) made LR (h, w) the `kind` way (LR pixel i centred on HR pixel 3i + 1)."""
    if kind == "area":
        return hr.reshape(hr.shape[0] // SCALE, SCALE, hr.shape[1] // SCALE, SCALE).mean(axis=(1, 3))
    if kind == "point":
        return hr[1::SCALE, 1::SCALE]
    if kind == "bicubic":
        image = torch.from_numpy(hr[None, None].astype(np.float32))
        return F.interpolate(image, scale_factor=1 / SCALE, mode="bicubic", antialias=True)[0, 0].numpy()
    if kind.startswith("gausspoint"):  # as scikit-image's rescale with anti_aliasing does it, nearly
        return downsample(ndimage.gaussian_filter(hr, float(kind[len("gausspoint"):])), "point")
    if kind.startswith("gauss"):
        return downsample(ndimage.gaussian_filter(hr, float(kind[len("gauss"):])), "area")
    raise ValueError(kind)


def stack_of(hr: np.ndarray, kind: str, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Nine LR frames of `hr`, each moved by up to one LR pixel (the first not moved), with noise."""
    frames = []
    for index in range(9):
        shift = (0.0, 0.0) if index == 0 else tuple(rng.uniform(-SCALE, SCALE, 2))
        moved = ndimage.shift(hr, shift, order=3, mode="reflect")
        low = downsample(moved, kind)
        frames.append(low + rng.normal(0.0, noise * hr.mean(), low.shape))
    return np.stack(frames).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--scenes", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.01, help="noise std / the scene's level")
    args = parser.parse_args()
    model = load_model("piunet").model
    scenes = evidence_scenes("in-distribution", "validation", args.scenes, 64, 9)
    print(f"weights: shipped; {args.scenes} validation HR crops, 9 frames of 64 x 64 LR, noise {args.noise:g} x level")
    for kind in args.kinds:
        rng = np.random.default_rng(5)
        margins = {True: [], False: []}
        for index, hr in enumerate(scenes["hr"]):
            hr = hr.astype(np.float64)
            frames = stack_of(hr, kind, args.noise, rng)
            masks = np.ones(frames.shape, bool)
            strongest = max(scene_score(BASELINES[name](frames, masks), hr) for name in STRONGEST_CANDIDATES)
            scores = {}
            for chosen in (True, False):
                with mock.patch.object(tiled, "SCENE_PSF_WIDTH", chosen):
                    scores[chosen] = scene_score(super_resolve(Stack.in_memory(frames, masks), model,
                                                               torch.device("cpu"))[0], hr)
                margins[chosen].append(scores[chosen] - strongest)
            print(f"{kind} {index}: strongest classical {strongest:.3f} dB; engine {scores[True]:.3f} "
                  f"(fixed PSF {scores[False]:.3f})", flush=True)
        for chosen in (False, True):
            interval = bootstrap_mean(margins[chosen])
            print(f"{kind}, {'PSF chosen per scene' if chosen else 'fixed 1.2 HR px PSF'}: margin over the strongest "
                  f"classical {interval.mean:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}], worst "
                  f"{min(margins[chosen]):+.3f}, lost {sum(m < 0 for m in margins[chosen])} of {len(margins[chosen])}",
                  flush=True)


if __name__ == "__main__":
    main()
