"""`misr super-resolve`: one time series of frames -> the SR and uncertainty GeoTIFFs."""

from __future__ import annotations

import argparse
from dataclasses import fields

from ..inference.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE
from ..rasters.stack import DEFAULT_MAX_FRAMES
from .options import add_device, add_model, add_output, add_progress


def add(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "super-resolve", help="super-resolve a time series of co-located frames x3",
        description="Super-resolve x3 a time series of single-band rasters of one scene on one "
                    "grid, writing a float32 GeoTIFF of the SR image and, optionally, one of its "
                    "per-pixel uncertainty (Laplace scale = expected absolute error, input units).")
    p.add_argument("--frames", nargs="+", required=True, metavar="FILE",
                   help="the frames (any GDAL raster, any numeric type), all on one grid")
    p.add_argument("--masks", nargs="+", metavar="FILE",
                   help="one mask per frame, same order and grid: nonzero = clear, 0 = cloud/invalid "
                        "(without masks, each frame's nodata value marks invalid pixels)")
    add_output(p, "SR GeoTIFF to write")
    p.add_argument("--uncertainty", metavar="FILE", help="uncertainty GeoTIFF to write (optional)")
    add_model(p)
    p.add_argument("--band", type=int, metavar="N", help="1-based band to read from multi-band frames")
    add_device(p)
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="run the network with PyTorch (default) or ONNX Runtime (exported on first use "
                        "into ~/.cache/qgis-misr, or give an .onnx file as --weights)")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32",
                   help="fp16/bf16: mixed precision (autocast), CUDA with --backend torch only (default: fp32)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="tiles per forward pass (default: 1 on the CPU, 4 on a GPU; halved on out-of-memory)")
    p.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE, metavar="PX",
                   help=f"LR tile size in pixels; bounds memory (default: {DEFAULT_TILE_SIZE})")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, metavar="PX",
                   help=f"LR overlap between tiles, blended without seams (default: {DEFAULT_OVERLAP})")
    p.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, metavar="N",
                   help=f"use at most the N clearest frames (default: {DEFAULT_MAX_FRAMES})")
    p.add_argument("--ttf-steps", type=int, default=0, metavar="N",
                   help="test-time fine-tuning: first tune (a copy of) the network for N steps on windows "
                        "of the scene itself, each frame in turn left out and predicted from the others "
                        "through its own blur kernel (estimated alongside, from the kernel prior); for "
                        "imagery unlike the training data; needs 3 frames and --backend torch; slow on a "
                        "CPU (default: 0, off; `misr models --json` gives the recommended N)")
    p.add_argument("--kernels-out", metavar="FILE.json",
                   help="with --ttf-steps: write the blur kernel the fine-tuning estimated for every frame "
                        "(15 x 15 in output pixels, with its width, orientation and ellipticity) as JSON")
    p.add_argument("--align", action="store_true",
                   help="resample frames and masks that are not on the first frame's grid (CRS, size, "
                        "geotransform) onto it (frames bilinear, masks nearest) instead of failing")
    p.add_argument("--memory-budget", metavar="SIZE",
                   help="refuse the run up front if it would need more memory than this (bytes, or 800M, 6G; "
                        "default: $MISR_MEMORY_BUDGET, or half of the memory available)")
    add_progress(p)
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> None:
    from ..pipeline import SuperResolveRequest, super_resolve_files
    from ..progress import Progress

    args.progress_reporter = Progress(args.progress)
    request = SuperResolveRequest(**{f.name: getattr(args, f.name) for f in fields(SuperResolveRequest)})
    super_resolve_files(request, args.progress_reporter)
