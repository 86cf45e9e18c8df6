"""Without masks and with more frames than --max-frames: the SR of the frames a run picks, on
VALIDATION scenes, scored per scene; run once per checkout, then compare.

Each scene (the in-distribution validation set: simulated bright clouds on some frames, their
masks not given) is written as GeoTIFF frames and run through ``super_resolve_files`` as a user
would (`--max-frames`), so the run's own frame choice and cloud screening are what is measured.

    OMP_NUM_THREADS=1 PYTHONPATH=/old/engine .venv/bin/python scripts/screened_selection_study.py --out old.json
    OMP_NUM_THREADS=1 .venv/bin/python scripts/screened_selection_study.py --out new.json --against old.json

(docs/evaluation/screened_selection_validation.log)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from misr_engine.evaluation.adaptation import (
    DATA_RANGE,
    evidence_scenes,
    paired_interval,
    scene_score,
)
from misr_engine.pipeline import SuperResolveRequest, super_resolve_files
from misr_engine.rasters.bands import read_band
from misr_engine.rasters.grid import Grid
from misr_engine.rasters.writer import write_geotiff


def write_frames(folder: Path, frames: np.ndarray) -> list[str]:
    """`frames` (T,H,W) as float32 GeoTIFFs on one north-up grid, no masks."""
    grid = Grid("", (500000.0, 10.0, 0.0, 4600000.0, 0.0, -10.0), frames.shape[2], frames.shape[1])
    paths = [str(folder / f"frame_{index:02d}.tif") for index in range(len(frames))]
    for path, frame in zip(paths, frames):
        write_geotiff(path, frame.astype(np.float32), grid)
    return paths


def border_psnr(sr: np.ndarray, hr: np.ndarray, width: int = 3) -> float:
    """PSNR (dB, reflectance) over the outer `width` HR pixels, which cPSNR crops: a screening
    that fails at the frames' edges shows here (no shift or bias correction: paired use only)."""
    ring = np.ones(hr.shape, bool)
    ring[width:-width, width:-width] = False
    error = (np.nan_to_num(sr[ring]) - hr[ring]) / DATA_RANGE
    return float(-10 * np.log10(np.mean(error ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--frames", type=int, default=12, help="frames per scene")
    parser.add_argument("--max-frames", type=int, default=6)
    parser.add_argument("--out", required=True)
    parser.add_argument("--against", help="the other checkout's scores: print the paired change")
    args = parser.parse_args()
    scenes = evidence_scenes("in-distribution", "validation", args.scenes, 64, args.frames)
    scores, used, borders = [], [], []
    for frames, masks, hr in zip(scenes["frames"], scenes["masks"], scenes["hr"]):
        with tempfile.TemporaryDirectory() as folder:
            paths = write_frames(Path(folder), frames)
            result = super_resolve_files(SuperResolveRequest(frames=paths, output=str(Path(folder) / "sr.tif"),
                                                             max_frames=args.max_frames))
            clear = [float(masks[paths.index(path)].mean()) for path in result.frames]
            sr = read_band(result.output)[0]
            scores.append(scene_score(sr, hr))
            borders.append(border_psnr(sr, hr))
            used.append(clear)
        print(f"{scores[-1]:.3f} dB (border {borders[-1]:.3f} dB), frames used {len(clear)}, their clear shares "
              f"{np.round(clear, 2).tolist()}", flush=True)
    with open(args.out, "w") as handle:
        json.dump({"scores": scores, "clear_used": used, "borders": borders}, handle)
    if args.against:
        with open(args.against) as handle:
            other = json.load(handle)
        mean, low, high = paired_interval(scores, other["scores"])
        share = [np.mean(c) for c in used]
        share_other = [np.mean(c) for c in other["clear_used"]]
        print(f"change {mean:+.3f} dB [{low:+.3f}, {high:+.3f}] over {len(scores)} scenes; "
              f"changed by more than 0.01 dB: {sum(abs(a - b) > 0.01 for a, b in zip(scores, other['scores']))}; "
              f"mean clear share of the frames used {np.mean(share):.3f} (other {np.mean(share_other):.3f}); "
              f"frames used {np.mean([len(c) for c in used]):.2f} (other {np.mean([len(c) for c in other['clear_used']]):.2f})")
        if "borders" in other:
            mean, low, high = paired_interval(borders, other["borders"])
            print(f"the outer 3 HR px (cropped by cPSNR): {mean:+.3f} dB [{low:+.3f}, {high:+.3f}], "
                  f"worst scene {min(a - b for a, b in zip(borders, other['borders'])):+.3f}")


if __name__ == "__main__":
    main()
