"""`misr bench`: speed and peak memory of every available backend on this machine."""

from __future__ import annotations

import argparse
import json
import sys

from ..evaluation.bench_settings import DEFAULTS, QUICK


def add(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="measure speed and peak memory of every available backend on this machine",
        description="For each model and available backend (torch CPU/CUDA, ONNX Runtime CPU/CUDA): "
                    "milliseconds per SxS LR scene of T frames (median after warm-up), and the real "
                    "tiled super-resolution of synthetic rasters of growing size (seconds, output "
                    "megapixels per second, peak memory beside the memory check's estimate, scaling). "
                    "Each measurement runs in its own process. Options left out take the --quick values "
                    "with --quick, else the defaults.")
    p.add_argument("--model", nargs="+", metavar="NAME", help="models (default: every model with shipped weights)")
    p.add_argument("--weights", metavar="FILE", help="weights file (one --model only)")
    p.add_argument("--backends", default="torch,onnx", help="comma-separated: torch, onnx (default: both)")
    p.add_argument("--devices", default="cpu,cuda", help="comma-separated: cpu, cuda (default: both, where present)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and few repeats: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    p.add_argument("--scene-size", type=int, metavar="PX", help=f"LR scene side (default: {DEFAULTS['scene_size']})")
    p.add_argument("--frames", type=int, metavar="T", help=f"frames per scene (default: {DEFAULTS['frames']})")
    p.add_argument("--sizes", metavar="PX,PX", help="LR raster sides for super_resolve (default: "
                                                    + ",".join(map(str, DEFAULTS["sizes"])) + ")")
    p.add_argument("--tile-size", type=int, metavar="PX", help=f"tile size (default: {DEFAULTS['tile_size']})")
    p.add_argument("--overlap", type=int, metavar="PX", help=f"tile overlap (default: {DEFAULTS['overlap']})")
    p.add_argument("--batch-size", type=int, metavar="N", help="tiles per forward pass (default: per device)")
    p.add_argument("--repeats", type=int, metavar="N", help=f"timed scene runs (default: {DEFAULTS['repeats']})")
    p.add_argument("--warmup", type=int, metavar="N", help=f"untimed scene runs first (default: {DEFAULTS['warmup']})")
    p.add_argument("--threads", type=int, metavar="N", help="torch / ONNX Runtime threads (default: torch's)")
    p.add_argument("--without-masks", action="store_true",
                   help="run the rasters without their cloud masks: the automatic cloud screening is measured too")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> None:
    from ..evaluation.bench import format_report, run_bench
    from ..evaluation.bench_settings import bench_models, bench_settings

    settings = bench_settings(args.quick, {key: getattr(args, key) for key in DEFAULTS if key != "sizes"},
                              args.sizes, args.batch_size, args.threads, masks=not args.without_masks)
    report = run_bench(bench_models(args.model, args.weights), args.weights, args.backends.split(","),
                       args.devices.split(","), settings,
                       log=None if args.json else (lambda line: print(line, file=sys.stderr, flush=True)))
    print(json.dumps(report) if args.json else format_report(report))
