"""`misr super-resolve`: one time series of frames -> the SR and uncertainty GeoTIFFs."""

from __future__ import annotations

import argparse
from dataclasses import fields

from ..imaging.mtf import ENGINE_MTF, MTF_RANGE
from ..inference.normalisation import LEAVE_OUT_RATIO
from ..inference.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE
from ..rasters.masks import AUTO, MASK_KINDS, UNUSABLE
from ..rasters.selection import DEFAULT_MAX_FRAMES
from ..registration.screening import DEFAULT_DILATION, MIN_FRAMES as MIN_SCREENED_FRAMES
from .options import add_device, add_model, add_output, add_progress


def add(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "super-resolve", help="super-resolve a time series of co-located frames x3",
        description="Super-resolve x3 a time series of rasters of one scene on one grid (one band, or "
                    "several with --bands), writing a float32 GeoTIFF of the SR image and, optionally, one "
                    "of its per-pixel uncertainty (Laplace scale = expected absolute error, input units).",
        epilog="Mask kinds and what each treats as unusable: "
               + "; ".join(f"{kind}: {what}" for kind, what in UNUSABLE.items())
               + ". Without masks, clouds and shadows are screened from the time series itself (pixels much "
                 f"brighter or darker than the other dates at that place; needs {MIN_SCREENED_FRAMES} frames) "
                 "unless --no-auto-mask. Output of integer input is clipped to its data type's range "
                 "(unsigned: at 0).")
    p.add_argument("--frames", nargs="+", required=True, metavar="FILE",
                   help="the frames (any GDAL raster, any numeric type), all on one grid")
    p.add_argument("--masks", nargs="+", metavar="FILE",
                   help="one mask per frame, same order, on its frame's grid or covering it with pixels an "
                        "integer multiple of the frame's (read by nearest neighbour): see --mask-kind "
                        "(without masks, each frame's nodata value marks invalid pixels)")
    p.add_argument("--mask-kind", nargs="+", default=[AUTO], choices=MASK_KINDS + (AUTO,), metavar="KIND",
                   help=f"what the masks are, one for all or one per mask: {', '.join(MASK_KINDS)} (Sentinel-2 "
                        "scene classification, Landsat Collection 2 QA_PIXEL, Fmask) or auto (default: detected "
                        "from each mask's values, said in a note)")
    p.add_argument("--mask-snow", action="store_true",
                   help="count snow and ice as unusable (SCL 11, QA_PIXEL bit 5, Fmask 3)")
    p.add_argument("--mask-dark-areas", action="store_true",
                   help="count SCL class 2 (dark area / cast shadow) as unusable")
    p.add_argument("--mask-dilation", type=int, metavar="PX",
                   help="grow the unusable areas of the masks by PX pixels (default: 0 for given masks, "
                        f"{DEFAULT_DILATION} for the automatic screening, whose clouds grow only through pixels "
                        "that depart from the other dates)")
    p.add_argument("--no-auto-mask", dest="auto_mask", action="store_false",
                   help="without masks, do not screen clouds and shadows from the time series")
    add_output(p, "SR GeoTIFF to write")
    p.add_argument("--uncertainty", metavar="FILE", help="uncertainty GeoTIFF to write (optional)")
    add_model(p)
    p.add_argument("--band", type=int, metavar="N", help="1-based band to read from multi-band frames")
    p.add_argument("--bands", type=band_list, metavar="LIST",
                   help="several bands (1,2,3 or all): registered once, each super-resolved, written as one "
                        "multi-band GeoTIFF (and one uncertainty band per band)")
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
    p.add_argument("--sensor-mtf", type=float, nargs="+", metavar="MTF",
                   help="the sensor's MTF at the input's Nyquist frequency, one for every band or one per band of "
                        "--bands (its data-quality report gives it per band; a resampled product's is lower), for "
                        "the back-projection that makes the SR consistent with the frames; between "
                        f"{MTF_RANGE[0]:g} and {MTF_RANGE[1]:g} (default: "
                        f"{ENGINE_MTF:.2f}, Sentinel-2-like, adjusted per scene for frames much sharper or blurrier "
                        "than that; the outputs' MISR_PSF_SIGMA tag says the PSF used). State it "
                        "only when known: a value lower than the true one oversharpens (docs/sensor-mtf.md)")
    p.add_argument("--reference-frame", metavar="FILE",
                   help="one of --frames: where the surface differs between the dates (a harvest, a flood, a new "
                        "building), show it as this frame does instead of as the clear-temporal mean of the frames; "
                        "where this frame is cloudy the SR shows the mean (default: the mean everywhere)")
    p.add_argument("--keep-noisy-frames", action="store_true",
                   help=f"keep frames at least {LEAVE_OUT_RATIO:g} times as noisy as the median frame (a hazy or dark "
                        "date, another sensor); by default they are left out, each named in a warning, since one such "
                        "frame costs the SR more than its date adds")
    p.add_argument("--align", action="store_true",
                   help="resample frames and masks that are not on the first frame's grid (CRS, size, "
                        "geotransform) onto it (frames bilinear, masks nearest) instead of failing")
    p.add_argument("--extent", nargs=4, type=float, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                   help="super-resolve only this area, in the frames' CRS (its pixels, snapped outward to whole "
                        "pixels of the first frame; the rest of the files is never read); default: the whole frames")
    p.add_argument("--memory-budget", metavar="SIZE",
                   help="refuse the run up front if it would need more memory than this (bytes, or 800M, 6G; "
                        "default: $MISR_MEMORY_BUDGET, or half of the memory available)")
    add_progress(p)
    p.set_defaults(command=run)


def band_list(text: str) -> list[int] | str:
    """``--bands``: ``all`` or comma-separated 1-based band numbers (`rasters.bands.parse_bands`)."""
    from ..errors import MisrError
    from ..rasters.bands import parse_bands

    try:
        return parse_bands(text)
    except MisrError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--bands {text}: ")) from None


def run(args: argparse.Namespace) -> None:
    from ..pipeline import SuperResolveRequest, super_resolve_files
    from ..progress import Progress

    args.progress_reporter = Progress(args.progress)
    request = SuperResolveRequest(**{f.name: getattr(args, f.name) for f in fields(SuperResolveRequest)})
    super_resolve_files(request, args.progress_reporter)
