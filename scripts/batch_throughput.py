"""Measure `misr batch` throughput on this machine: scenes per minute against the number of local
Dask workers (docs/scale-out.md). Scenes are windows of the embedded sample (9 frames with masks).

    .venv/bin/python scripts/batch_throughput.py [--scenes 8] [--size 48] [--configs 1x1,1x2,2x1] [-o results.json]

Each config WORKERSxTHREADS runs the same manifest into a fresh folder. Reported: the wall time
of the whole command (cluster start included), the time from the cluster's first event to the
last scene (model loading included), scenes per minute over that, and how busy the CPUs were
just before (other work on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from osgeo import gdal

from misr_engine.evaluation.bench import cpu_busy
from misr_engine.resources import sample_dir


def make_archive(folder: Path, count: int, size: int) -> Path:
    sample = sample_dir()
    lines = ["id,frames,masks"]
    for index in range(count):
        scene = folder / f"scene{index:03d}"
        scene.mkdir(parents=True)
        offset = (17 * index) % (140 - size)
        for frame in range(1, 10):
            for kind in ("frame", "mask"):
                name = f"{kind}_{frame:02d}.tif"
                gdal.Translate(str(scene / name), str(sample / name), srcWin=[offset, 140 - size - offset, size, size])
        lines.append(f"{scene.name},{scene.name}/frame_*.tif,{scene.name}/mask_*.tif")
    (folder / "scenes.csv").write_text("\n".join(lines) + "\n")
    return folder / "scenes.csv"


def measure(manifest: Path, workers: int, threads: int, output: Path) -> dict:
    busy = cpu_busy(2.0)
    load = os.getloadavg()[0]
    command = [sys.executable, "-m", "misr_engine.cli", "batch", str(manifest), "-o", str(output),
               "--workers", str(workers), "--torch-threads", str(threads), "--progress", "json",
               "--dashboard-address", ":0"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = last = None
    scenes = 0
    for line in process.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "start":
            first = time.perf_counter()
        elif event.get("event") == "progress":
            last, scenes = time.perf_counter(), scenes + (event.get("status") == "done")
    process.wait()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(process.stderr.read())
    running = (last or first) - first
    scenes_report = json.loads((output / f"{manifest.stem}_report.json").read_text())["scenes"]
    peak = max((scene.get("peak_rss_mb") or 0 for scene in scenes_report), default=0)
    loading = [scene["seconds"] for scene in scenes_report if scene.get("loaded_model")]
    warm = [scene["seconds"] for scene in scenes_report if not scene.get("loaded_model")]
    return {"workers": workers, "torch_threads": threads, "scenes": scenes, "wall_s": round(wall, 1),
            "running_s": round(running, 1), "scenes_per_min": round(scenes / running * 60, 2),
            "scenes_per_min_wall": round(scenes / wall * 60, 2), "worker_peak_rss_mb": peak,
            "scene_s_first_on_worker": _mean(loading), "scene_s_after": _mean(warm), "cpu_busy_before": busy,
            "load_average_before": round(load, 2), "load_average_after": round(os.getloadavg()[0], 2)}


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--size", type=int, default=48, help="LR pixels of each scene's side")
    parser.add_argument("--configs", default="1x1,1x2,2x1", help="WORKERSxTHREADS, comma-separated")
    parser.add_argument("-o", "--output", help="write the results as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="misr-throughput-") as temp:
        manifest = make_archive(Path(temp) / "archive", args.scenes, args.size)
        results = []
        for index, config in enumerate(args.configs.split(",")):
            workers, threads = (int(v) for v in config.split("x"))
            output = Path(temp) / f"out-{index}-{config}"
            output.mkdir()
            result = measure(manifest, workers, threads, output)
            print(json.dumps(result), flush=True)
            results.append(result)
    document = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
                "scenes": args.scenes, "size": args.size, "frames": 9, "results": results}
    if args.output:
        Path(args.output).write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
