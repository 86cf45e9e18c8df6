"""Time per test-time fine-tuning step and peak memory of `misr super-resolve --ttf-steps` (issue 15
item 5), on the embedded sample (140 x 140 LR, 9 frames) and on the sample tiled 2 x 2
(280 x 280 LR), against the same runs without fine-tuning.

Each run is its own process (peak RSS from wait4); the step times are the intervals between the
progress events of consecutive steps (median, min, max).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/ttf_cost.py [--weights W] [--steps 6] [--device cpu] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STEP_PREFIX = "test-time fine-tuning "


def tiled_sample(folder: Path, repeat: int) -> tuple[list[str], list[str]]:
    """The embedded sample's frames and masks, tiled `repeat` x `repeat` (same georeferencing origin)."""
    from osgeo import gdal
    from misr_engine.resources import sample_paths
    frames, masks = sample_paths()
    if repeat == 1:
        return frames, masks
    written: list[list[str]] = [[], []]
    for kind, paths in enumerate((frames, masks)):
        for path in paths:
            source = gdal.Open(path)
            data = np.tile(source.ReadAsArray(), (repeat, repeat))
            target = folder / f"tiled_{Path(path).name}"
            out = gdal.GetDriverByName("GTiff").Create(str(target), data.shape[1], data.shape[0], 1,
                                                       source.GetRasterBand(1).DataType)
            out.SetGeoTransform(source.GetGeoTransform())
            out.SetProjection(source.GetProjection())
            out.GetRasterBand(1).WriteArray(data)
            out = None
            written[kind].append(str(target))
    return written[0], written[1]


def run(frames: list[str], masks: list[str], output: Path, steps: int, extra: list[str]) -> dict:
    """One `misr super-resolve` run: seconds, peak RSS (MB) and the fine-tuning step times."""
    argv = [sys.executable, "-m", "misr_engine.cli", "super-resolve", "--frames", *frames, "--masks", *masks,
            "-o", str(output), "--overwrite", "--progress", "json", "--ttf-steps", str(steps), *extra]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    step_times = []
    for line in process.stdout:
        event = json.loads(line)
        if event.get("event") == "progress" and event.get("message", "").startswith(STEP_PREFIX):
            step_times.append(time.perf_counter())
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"misr failed: {process.stderr.read()}")
    intervals = np.diff(step_times)
    return {"steps": steps, "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "step_s_median": _round(np.median(intervals)),
            "step_s_min": _round(intervals.min()), "step_s_max": _round(intervals.max())} if len(intervals) else \
        {"steps": steps, "seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def _round(value: float) -> float:
    return round(float(value), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--tilings", type=int, nargs="+", default=[1, 2],
                        help="the sample tiled N x N (1: 140 x 140 LR; 2: 280 x 280)")
    args = parser.parse_args()
    extra = ["--device", args.device] + (["--weights", args.weights] if args.weights else [])
    results = {"load_average_start": os.getloadavg(), "cpu_count": os.cpu_count(),
               "threads": os.environ.get("OMP_NUM_THREADS"), "runs": []}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in args.tilings:
            frames, masks = tiled_sample(Path(folder), repeat)
            for steps in (0, args.steps):
                result = run(frames, masks, Path(folder) / "sr.tif", steps, extra)
                result["scene"] = f"{140 * repeat} x {140 * repeat} LR, 9 frames"
                results["runs"].append(result)
                print(json.dumps(result), flush=True)
    results["load_average_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
