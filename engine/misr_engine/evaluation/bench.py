"""`misr bench`: speed and peak memory of every available backend, on this machine.

For each model and backend (torch CPU, torch CUDA per precision, ONNX Runtime CPU / CUDA
execution providers, whichever are present) it measures

* **scene**: milliseconds per forward pass of one SxS LR scene of T frames (default 128x128, T=9,
  the Proba-V scene of the PIUnet paper): median of repeated runs after warm-up runs, through the
  backend's runner (host-to-device copies included);
* **rasters**: the real pipeline of `misr super-resolve` (frames and masks read from GeoTIFFs
  window by window, registration, tiles, blending, SR and uncertainty GeoTIFFs written strip by
  strip) on synthetic rasters of growing size (default 128 and 384 LR pixels, 9x the pixels),
  written to files beforehand by the parent process: seconds, output megapixels per second and
  peak memory, and how time and memory scale with the pixels.

Every measurement runs in a fresh process (`python -m misr_engine.evaluation.bench CASE`), so its peak
memory (process peak RSS, VmHWM on Linux; torch.cuda.max_memory_allocated on a GPU) is its own.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import SCALE, __version__
from ..errors import MisrError

if TYPE_CHECKING:
    from ..rasters.in_memory import Stack

CASE_TIMEOUT_S = 3600
SHARED_CPU_BUSY = 0.15
"""Above this fraction of the CPUs busy with other work just before or after: figures are flagged."""


# ---------------------------------------------------------------------------------------------
# The machine


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over the next `seconds` (from /proc/stat), or None off Linux.

    Sampled while the bench itself is idle, it tells whether other work shares the CPU.
    """
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(1 - (idle1 - idle0) / max(1, total1 - total0), 3)


def machine_info() -> dict[str, Any]:
    """CPU, threads, load and GPUs: what a reader needs to compare figures."""
    import torch
    info: dict[str, Any] = {"cpu": cpu_name(), "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                            "torch": torch.__version__, "gpus": []}
    if hasattr(os, "getloadavg"):
        info["load_average"] = round(os.getloadavg()[0], 2)
    info["cpu_busy_before"] = cpu_busy()
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            info["gpus"].append({"id": f"cuda:{index}", "name": props.name,
                                 "memory_mb": props.total_memory // 2 ** 20})
    try:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    return info


def available_configs(backends: list[str], devices: list[str]) -> list[dict[str, str]]:
    """(backend, device, precision) triples that can run here, among those asked for."""
    import torch
    configs = []
    cuda = torch.cuda.is_available()
    if "torch" in backends:
        if "cpu" in devices:
            configs.append({"backend": "torch", "device": "cpu", "precision": "fp32"})
        if "cuda" in devices and cuda:
            for precision in ("fp32", "fp16") + (("bf16",) if torch.cuda.is_bf16_supported() else ()):
                configs.append({"backend": "torch", "device": "cuda", "precision": precision})
    if "onnx" in backends:
        try:
            import onnxruntime
            providers = onnxruntime.get_available_providers()
        except ImportError:
            providers = []
        if "cpu" in devices and "CPUExecutionProvider" in providers:
            configs.append({"backend": "onnx", "device": "cpu", "precision": "fp32"})
        if "cuda" in devices and "CUDAExecutionProvider" in providers:
            configs.append({"backend": "onnx", "device": "cuda", "precision": "fp32"})
    return configs


# ---------------------------------------------------------------------------------------------
# One measurement (in its own process)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (`budget.peak_rss_mib`), 0 where unknown."""
    from ..inference.budget import peak_rss_mib
    return peak_rss_mib() or 0.0


def synthetic_stack(size: int, frames: int, seed: int = 0) -> Stack:
    """A reproducible textured scene of `frames` shifted, noisy frames with a few cloud masks."""
    from scipy import ndimage

    from ..rasters.in_memory import Stack
    rng = np.random.default_rng(seed)
    scene = ndimage.gaussian_filter(rng.standard_normal((size + 4, size + 4)), 1.5)
    scene = 1000.0 + 300.0 * scene / scene.std()
    yy, xx = np.mgrid[:size, :size]
    stack, masks = [], []
    for index in range(frames):
        dy, dx = rng.integers(0, 5, 2)
        frame = scene[dy:dy + size, dx:dx + size] * rng.uniform(0.95, 1.05) + rng.normal(0, 5, (size, size))
        mask = np.ones((size, size), bool)
        if index % 3 == 1:  # a cloud on every third frame
            cy, cx = rng.integers(0, size, 2)
            mask &= (yy - cy) ** 2 + (xx - cx) ** 2 > (size / 5) ** 2
        stack.append(frame.astype(np.float32))
        masks.append(mask)
    return Stack.in_memory(np.stack(stack), np.stack(masks))


def write_synthetic_rasters(size: int, frames: int, folder: str) -> tuple[list[str], list[str]]:
    """`synthetic_stack(size, frames)` as GeoTIFF frames and masks in `folder`: their paths."""
    from ..rasters.writer import write_geotiff
    stack = synthetic_stack(size, frames)
    paths: tuple[list[str], list[str]] = ([], [])
    for index, (frame, mask) in enumerate(zip(stack.frames, stack.masks)):
        for kind, data, listed in (("frame", frame, paths[0]), ("mask", mask, paths[1])):
            listed.append(os.path.join(folder, f"{kind}_{size}_{index:02d}.tif"))
            write_geotiff(listed[-1], data.astype(np.float32), stack.grid)
    return paths


def measure(case: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement described by `case` in this process (see `run_case`)."""
    import torch

    from ..inference.engine import open_engine
    if case.get("threads"):
        torch.set_num_threads(int(case["threads"]))
    engine = open_engine(case["backend"], case["model"], case.get("weights"), case["device"],
                         case["precision"])
    runner = engine.runner
    cuda = engine.device.startswith("cuda") and case["backend"] == "torch"
    result: dict[str, Any] = {"backend": case["backend"], "device": engine.device,
                              "provider": engine.provider, "precision": engine.precision,
                              "loaded_rss_mb": peak_rss_mb()}
    frames = int(case["frames"])
    if case["kind"] == "scene":
        size = int(case["scene_size"])
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1, frames, size, size)).astype(np.float32)
        m = (rng.random((1, frames, size, size)) > 0.1).astype(np.float32)
        p = rng.uniform(-0.5, 0.5, (1, frames, 2)).astype(np.float32)
        for _ in range(int(case["warmup"])):
            runner(x, m, p)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(int(case["repeats"])):
            started = time.perf_counter()
            runner(x, m, p)  # returns numpy: the device is synchronised
            times.append((time.perf_counter() - started) * 1000)
        result.update({"size": size, "frames": frames, "repeats": len(times),
                       "ms_median": round(statistics.median(times), 2), "ms_min": round(min(times), 2),
                       "ms_max": round(max(times), 2)})
    else:
        from ..inference.tiled import super_resolve_strips
        from ..inference.tiling import make_tiles
        from ..pipeline import SuperResolveRequest, super_resolve_files
        size, tile, overlap = int(case["size"]), int(case["tile_size"]), int(case["overlap"])
        # one tile through the same path first: one-time set-up (allocators, kernels) not timed
        for _ in super_resolve_strips(synthetic_stack(min(tile, size), frames, seed=1), runner, None, tile,
                                      overlap):
            pass
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory(prefix="misr-bench-") as folder:
            request = SuperResolveRequest(
                frames=case["frame_paths"], masks=case["mask_paths"], output=os.path.join(folder, "sr.tif"),
                uncertainty=os.path.join(folder, "uncertainty.tif"), tile_size=tile, overlap=overlap,
                batch_size=case.get("batch_size"))
            finished = super_resolve_files(request, engine=engine)
        output_mp = (size * SCALE) ** 2 / 1e6
        result.update({"size": size, "frames": frames, "tile_size": tile, "overlap": overlap,
                       "tiles": len(make_tiles(size, size, tile, overlap)), "seconds": round(finished.seconds, 3),
                       "output_mp": round(output_mp, 6), "mp_per_s": round(output_mp / finished.seconds, 5),
                       "masks": request.masks is not None,
                       "estimate_mb": round(finished.estimated_memory / 2 ** 20, 1)})
    result["peak_rss_mb"] = peak_rss_mb()
    result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1) if cuda else None
    return result


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """`measure(case)` in a fresh Python process; its last stdout line is the JSON result."""
    command = [sys.executable, "-m", "misr_engine.evaluation.bench", json.dumps(case)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CASE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise MisrError(f"bench: {case['backend']} {case['device']} {case['kind']} took over "
                        f"{CASE_TIMEOUT_S} s") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise MisrError(f"bench: {case['backend']} {case['device']} {case['kind']} failed ({reason})")
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------
# The whole bench


def run_bench(models: list[str], weights: str | None, backends: list[str], devices: list[str],
              settings: dict[str, Any], log: Any = None) -> dict[str, Any]:
    """Measure every available configuration; returns the report (see docs/performance.md)."""
    machine = machine_info()
    configs = available_configs(backends, devices)
    if not configs:
        raise MisrError(f"bench: none of the backends {', '.join(backends)} on {', '.join(devices)} "
                        "is available here")
    report: dict[str, Any] = {"engine_version": __version__, "machine": machine,
                              "settings": settings, "models": []}
    with tempfile.TemporaryDirectory(prefix="misr-bench-inputs-") as folder:
        rasters = {size: write_synthetic_rasters(size, settings["frames"], folder) for size in settings["sizes"]}
        for name in models:
            report["models"].append(_bench_model(name, weights, configs, settings, rasters, log))
    if hasattr(os, "getloadavg"):
        machine["load_average_end"] = round(os.getloadavg()[0], 2)
    machine["cpu_busy_after"] = cpu_busy()
    busy = [b for b in (machine["cpu_busy_before"], machine["cpu_busy_after"]) if b is not None]
    machine["cpu_shared"] = bool(busy) and max(busy) > SHARED_CPU_BUSY
    return report


def _bench_model(name: str, weights: str | None, configs: list[dict[str, str]], settings: dict[str, Any],
                 rasters: dict[int, tuple[list[str], list[str]]], log: Any) -> dict[str, Any]:
    """Every measurement of one model: a scene and the rasters (paths by size) per configuration."""
    from ..inference.onnx_export import cached_onnx
    from ..models.weights import load_model
    loaded = load_model(name, weights)
    entry: dict[str, Any] = {"model": name, "weights": loaded.path.name, "weights_sha256": loaded.sha256,
                             "config": loaded.model.config.to_dict(), "results": []}
    onnx_path = None
    for config in configs:
        case_weights = str(loaded.path)
        if config["backend"] == "onnx":
            onnx_path = onnx_path or str(cached_onnx(name, loaded.path))
            case_weights = onnx_path
        base = {**config, **settings, "model": name, "weights": case_weights}
        label = f"{config['backend']} {config['device']} {config['precision']}"
        if log:
            log(f"bench: {name} {label}: scene {settings['scene_size']}x{settings['scene_size']}"
                f"xT{settings['frames']}")
        result: dict[str, Any] = {**config, "scene": run_case({**base, "kind": "scene"}), "rasters": []}
        result["provider"] = result["scene"]["provider"]
        for size in settings["sizes"]:
            if log:
                log(f"bench: {name} {label}: raster {size}x{size}")
            frame_paths, mask_paths = rasters[size]
            result["rasters"].append(run_case({**base, "kind": "raster", "size": size, "frame_paths": frame_paths,
                                               "mask_paths": mask_paths if settings["masks"] else None}))
        result["scaling"] = scaling(result["rasters"])
        entry["results"].append(result)
    return entry


def scaling(rasters: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How the largest raster compares with the smallest: pixels, time, tiles, peak memory."""
    if len(rasters) < 2:
        return None
    small, large = rasters[0], rasters[-1]
    return {"pixel_ratio": round(large["output_mp"] / small["output_mp"], 3),
            "time_ratio": round(large["seconds"] / small["seconds"], 3),
            "tile_ratio": round(large["tiles"] / small["tiles"], 3),
            "peak_rss_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
            "peak_rss_growth_mb": round(large["peak_rss_mb"] - small["peak_rss_mb"], 1)}


def format_report(report: dict[str, Any]) -> str:
    """The report as text tables."""
    machine, settings = report["machine"], report["settings"]
    lines = [f"machine: {machine['cpu']}, {machine['cpu_count']} logical CPUs, torch {machine['torch']} "
             f"with {machine['torch_threads']} threads"
             + (f", onnxruntime {machine['onnxruntime']}" if machine.get("onnxruntime") else "")]
    if machine.get("cpu_busy_before") is not None:
        lines.append(f"other work on the CPU: {100 * machine['cpu_busy_before']:.0f}% busy just before, "
                     f"{100 * (machine.get('cpu_busy_after') or 0):.0f}% just after the bench"
                     + (f" (load average {machine['load_average']} -> {machine.get('load_average_end')})"
                        if "load_average" in machine else "")
                     + ("  <- the CPU was shared: figures are pessimistic" if machine.get("cpu_shared") else ""))
    lines.append("GPU: " + (", ".join(f"{g['name']} ({g['memory_mb']} MB)" for g in machine["gpus"]) or "none"))
    for entry in report["models"]:
        config = ", ".join(f"{k} {v}" for k, v in entry["config"].items())
        lines += ["", f"model {entry['model']} ({entry['weights']}, sha256 {entry['weights_sha256'][:12]}, {config})",
                  "", f"scene {settings['scene_size']}x{settings['scene_size']} LR, T={settings['frames']}: "
                      f"median of {settings['repeats']} runs after {settings['warmup']} warm-up",
                  f"{'backend':<34}{'ms/scene':>10}{'min ms':>10}{'peak RSS MB':>13}{'peak GPU MB':>13}"]
        for result in entry["results"]:
            scene = result["scene"]
            lines.append(f"{_label(result):<34}{scene['ms_median']:>10.1f}{scene['ms_min']:>10.1f}"
                         f"{scene['peak_rss_mb']:>13.0f}{_gpu(scene):>13}")
        lines += ["", f"rasters: GeoTIFFs read in windows, registration, tiles {settings['tile_size']} px, "
                      f"overlap {settings['overlap']}, blending, two GeoTIFFs written in strips; "
                      f"T={settings['frames']}, "
                      + ("masks given" if settings["masks"] else "without masks (automatic cloud screening)")
                      + "; check MB: the memory the run's check estimated beforehand",
                  f"{'backend':<34}{'LR size':>10}{'tiles':>7}{'seconds':>10}{'output MP/s':>13}"
                  f"{'peak RSS MB':>13}{'check MB':>10}{'peak GPU MB':>13}"]
        for result in entry["results"]:
            for raster in result["rasters"]:
                lines.append(f"{_label(result):<34}{raster['size']:>6}x{raster['size']:<3}{raster['tiles']:>7}"
                             f"{raster['seconds']:>10.2f}{raster['mp_per_s']:>13.4f}"
                             f"{raster['peak_rss_mb']:>13.0f}{raster['estimate_mb']:>10.0f}{_gpu(raster):>13}")
            if result.get("scaling"):
                s = result["scaling"]
                lines.append(f"{'':<34}scaling: {s['pixel_ratio']:g}x the pixels ({s['tile_ratio']:g}x the tiles)"
                             f" -> {s['time_ratio']:g}x the time, peak RSS {s['peak_rss_growth_mb']:+g} MB")
    return "\n".join(lines)


def _label(result: dict[str, Any]) -> str:
    return f"{result['backend']} {result['device']} {result['precision']} ({result['provider']})"


def _gpu(measure: dict[str, Any]) -> str:
    return "-" if measure.get("peak_gpu_mb") is None else f"{measure['peak_gpu_mb']:.0f}"


if __name__ == "__main__":  # one measurement: python -m misr_engine.evaluation.bench '<case JSON>'
    import warnings
    warnings.simplefilter("ignore")
    print(json.dumps(measure(json.loads(sys.argv[1]))), flush=True)
