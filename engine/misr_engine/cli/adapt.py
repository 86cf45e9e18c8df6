"""`misr adapt`: fine-tune a network on the analyst's own LR stacks (no HR), resumably."""

from __future__ import annotations

import argparse
from dataclasses import fields

from ..rasters.selection import DEFAULT_MAX_FRAMES
from .options import add_model, add_output, add_progress


def add(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "adapt", help="fine-tune a network on your own LR time series (no HR needed)",
        description="Bring a network to a new sensor: fine-tune its weights self-supervised on your own "
                    "archive of LR stacks (each stack degraded x3 with blur kernels from the engine's "
                    "kernel prior, the network trained to recover the LR frames; no HR image is needed). "
                    "Writes new weights and a model card beside them (<output stem>.md), for "
                    "`misr super-resolve --weights` and the plugin. Rerun the same command to resume.")
    p.add_argument("--scenes", nargs="+", required=True, metavar="PATH",
                   help="scene folders (every raster in one is a frame of that scene; <frame stem>_mask.<ext> "
                        "is its mask, nonzero = clear), folders of scene folders, or JSON manifests "
                        "[{\"frames\": [...], \"masks\": [...]}, ...]")
    add_output(p, "weights file to write (.safetensors)")
    add_model(p, "adapt")
    p.add_argument("--steps", type=int, default=300, help="training steps (default: 300)")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="Adam learning rate (default: 1e-4)")
    p.add_argument("--batch-size", type=int, default=4, help="CR stacks per step (default: 4)")
    p.add_argument("--work-dir", metavar="DIR",
                   help="where the prepared windows and the checkpoint are kept (default: <output stem>.work); "
                        "rerunning with the same one resumes")
    p.add_argument("--band", type=int, metavar="N", help="1-based band to read from multi-band frames")
    p.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, metavar="N",
                   help=f"use at most the N clearest frames of each scene (default: {DEFAULT_MAX_FRAMES})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    add_progress(p)
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> None:
    from ..progress import Progress
    from ..training.adapt import AdaptRequest, adapt

    progress = Progress(args.progress)
    args.progress_reporter = progress
    request = AdaptRequest(**{f.name: getattr(args, f.name) for f in fields(AdaptRequest)})
    progress.event("start", command="adapt", model=request.model, steps=request.steps)
    weights = adapt(request, log=progress.note,
                    on_step=lambda step, loss: progress.update(step / request.steps,
                                                               f"step {step}/{request.steps}, loss {loss:.4f}"))
    progress.event("done", output=str(weights), card=str(request.card),
                   summary=f"wrote {weights} and {request.card}")
