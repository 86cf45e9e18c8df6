"""`make gpu-check`: what a lent GPU machine says about the engine, in one run of a few minutes.

1. the machine: torch, CUDA device, ONNX Runtime's execution providers;
2. speed and GPU memory per 128 x 128 LR scene of 9 frames, for torch in fp32, fp16 and bf16
   and for ONNX Runtime's CUDA provider when present (``evaluation.bench``'s scene case, each
   in its own process);
3. quality of mixed precision: cPSNR of the shipped network in fp16 / bf16 against fp32 on the
   validation stacks (packed by scripts/pack_for_device.py: the device image has no GDAL);
4. a full Sentinel-2 tile: 10980 x 10980 LR pixels of 9 frames (synthetic, in memory) through the
   tiled inference on the GPU, timed for as many rows of tiles as a time budget allows and
   extrapolated to the whole tile when it runs out (said so).

Writes gpu_check.json into --output (after each part, so a timeout keeps what was done). With --quick everything is tiny, so that
the CPU tests can run it in seconds (no GPU needed then: the scene speed is torch's on the CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from misr_engine.datasets.samples import load_samples
from misr_engine.evaluation.bench import available_configs, run_case
from misr_engine.evaluation.metrics import cpsnr
from misr_engine.models.weights import load_model

S2_TILE = 10980
FULL = {"scene_size": 128, "frames": 9, "repeats": 20, "warmup": 5, "tile": S2_TILE, "tile_seconds": 240.0,
        "val_scenes": 48}
QUICK = {"scene_size": 32, "frames": 3, "repeats": 2, "warmup": 1, "tile": 96, "tile_seconds": 60.0,
         "val_scenes": 2}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_mb=props.total_memory // 2 ** 20,
                    bf16=torch.cuda.is_bf16_supported())
    try:
        import onnxruntime
        info.update(onnxruntime=onnxruntime.__version__, providers=onnxruntime.get_available_providers())
    except ImportError:
        info.update(onnxruntime=None, providers=[])
    return info


def scene_speed(settings: dict[str, Any], quick: bool = False) -> list[dict[str, Any]]:
    """ms per scene and peak memory of every CUDA configuration present (bench's scene case, each in
    its own process); with `quick` on a machine without CUDA, of torch on the CPU instead (the tests'
    check that those processes run)."""
    on_cpu = quick and not torch.cuda.is_available()
    backends, devices = (["torch"], ["cpu"]) if on_cpu else (["torch", "onnx"], ["cuda"])
    results = []
    for config in available_configs(backends, devices):
        case = {**config, **settings, "kind": "scene", "model": "piunet", "weights": None}
        if config["backend"] == "onnx":
            from misr_engine.inference.onnx_export import cached_onnx
            case["weights"] = str(cached_onnx("piunet", None))
        try:
            results.append(run_case(case))
        except Exception as exc:  # a failing configuration is a finding, not the end of the check
            results.append({**config, "error": str(exc)})
    return results


def precision_quality(val_path: Path, count: int) -> dict[str, Any]:
    """Mean cPSNR (dB) of the shipped network on registered validation stacks, per precision."""
    data = load_samples(val_path)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model("piunet", None, device).model
    precisions = {"fp32": None}
    if device.type == "cuda":
        precisions["fp16"] = torch.float16
        if torch.cuda.is_bf16_supported():
            precisions["bf16"] = torch.bfloat16
    scores: dict[str, list[float]] = {name: [] for name in precisions}
    for index in range(min(count, len(data["frames"]))):
        centre, spread = data["norm"][index]
        masks = data["masks"][index]
        inputs = [np.where(masks, (data["frames"][index] - centre) / spread, 0.0), masks, data["shifts"][index]]
        tensors = [torch.from_numpy(np.asarray(a, np.float32))[None].to(device) for a in inputs]
        for name, dtype in precisions.items():
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                mean, _ = model(*tensors)
            sr = mean[0, 0].float().cpu().numpy() * spread + centre
            scores[name].append(cpsnr(sr / 10000.0, data["hr"][index] / 10000.0))
    summary = {name: float(np.mean(values)) for name, values in scores.items()}
    return {"scenes": len(scores["fp32"]), "cpsnr_db": summary,
            "difference_db": {name: summary[name] - summary["fp32"] for name in summary if name != "fp32"}}


def full_tile(size: int, seconds: float) -> dict[str, Any]:
    """Seconds for a size x size LR tile of 9 frames on the GPU (extrapolated past `seconds`)."""
    from misr_engine.evaluation.bench import synthetic_stack
    from misr_engine.inference.tiled import super_resolve_strips

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model("piunet", None, device).model
    stack = synthetic_stack(size, 9)
    started = time.perf_counter()
    rows = 0
    for strip in super_resolve_strips(stack, model, device, batch_size=16 if device.type == "cuda" else 1):
        rows = strip.row0 + len(strip.sr)
        if time.perf_counter() - started > seconds:
            break
    elapsed = time.perf_counter() - started
    total = size * 3
    return {"lr_size": size, "frames": 9, "device": str(device), "sr_rows_done": rows, "sr_rows": total,
            "seconds": round(elapsed, 1), "extrapolated": rows < total,
            "seconds_full_tile": round(elapsed * total / max(rows, 1), 1),
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2 ** 20) if device.type == "cuda" else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", "-o", required=True, help="folder for gpu_check.json")
    parser.add_argument("--val", default="device/s2_val.npz", help="validation stacks (scripts/pack_for_device.py)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU tests)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(), "settings": settings}
    steps = (("scenes", lambda: scene_speed({k: settings[k] for k in ("scene_size", "frames", "repeats", "warmup")},
                                            args.quick)),
             ("precision", lambda: precision_quality(Path(args.val), settings["val_scenes"])),
             ("full_tile", lambda: full_tile(settings["tile"], settings["tile_seconds"])))
    for name, step in steps:
        started = time.perf_counter()
        try:
            report[name] = step()
        except Exception as exc:
            report[name] = {"error": f"{exc.__class__.__name__}: {exc}"}
        print(f"gpu-check: {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1))  # what is done survives a timeout
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
