"""One super-resolution run, files in and files out: the engine's public entry point.

`super_resolve_files` is what `misr super-resolve`, `misr bench`, `misr demo` and batch runs
call. It checks every input and output before any pixel is read, opens the frames as a
streamed stack, keeps the clearest, loads the network (unless an `Engine` is given), runs the
tiled inference and writes the SR and uncertainty GeoTIFFs strip by strip into temporary files
that are committed together only on success.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from typing import TYPE_CHECKING

from . import SCALE, __version__
from .errors import MisrError
from .inference.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, MIN_TILE_SIZE
from .models.registry import DEFAULT_MODEL
from .rasters.outputs import atomic_outputs, check_output_path
from .rasters.stack import DEFAULT_MAX_FRAMES, LazyStack, open_stack, select_frames
from .rasters.writer import write_strips

if TYPE_CHECKING:  # torch is imported only once the inputs are known to be good (slow: ~1 s)
    from .inference.engine import Engine

PRODUCTS = (("super-resolved", "super-resolved x3"),
            ("uncertainty (Laplace scale, input units)", "uncertainty: Laplace scale"))
"""(MISR_PRODUCT tag, band description) of the SR and the uncertainty outputs."""


class Reporter(Protocol):
    """Where a run reports (``progress.Progress`` implements it)."""

    def event(self, name: str, **fields: Any) -> None: ...

    def update(self, fraction: float, message: str = "") -> None: ...


class _Silent:
    def event(self, name: str, **fields: Any) -> None:
        pass

    def update(self, fraction: float, message: str = "") -> None:
        pass


@dataclass(frozen=True)
class SuperResolveRequest:
    """Everything one run needs (the options of `misr super-resolve`, same names and defaults)."""

    frames: Sequence[str]
    output: str
    masks: Sequence[str] | None = None
    uncertainty: str | None = None
    model: str = DEFAULT_MODEL
    weights: str | None = None
    band: int | None = None
    device: str = "auto"
    backend: str = "torch"
    precision: str = "fp32"
    batch_size: int | None = None
    tile_size: int = DEFAULT_TILE_SIZE
    overlap: int = DEFAULT_OVERLAP
    max_frames: int = DEFAULT_MAX_FRAMES
    ttf_steps: int = 0
    kernels_out: str | None = None
    align: bool = False
    overwrite: bool = False

    @property
    def inputs(self) -> list[str]:
        """Every file the run reads."""
        return list(self.frames) + list(self.masks or []) + ([self.weights] if self.weights else [])

    @property
    def outputs(self) -> list[str]:
        """The files the run writes: the SR, then the uncertainty and the kernels if asked for."""
        return [self.output] + [p for p in (self.uncertainty, self.kernels_out) if p]

    def check(self) -> None:
        """Refuse options out of range and unusable outputs, each in one line (nothing is read yet)."""
        for name, value, low in (("tile-size", self.tile_size, MIN_TILE_SIZE), ("overlap", self.overlap, 0),
                                 ("max-frames", self.max_frames, 1), ("ttf-steps", self.ttf_steps, 0)):
            if value < low:
                unit = " LR pixels" if name == "tile-size" else ""
                raise MisrError(f"--{name} {value}: must be at least {low}{unit}")
        if self.batch_size is not None and self.batch_size < 1:
            raise MisrError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.ttf_steps and self.backend != "torch":
            raise MisrError("--ttf-steps needs --backend torch: ONNX Runtime runs fixed weights")
        if self.kernels_out and not self.ttf_steps:
            raise MisrError("--kernels-out needs --ttf-steps: the kernels are estimated by the fine-tuning")
        if len({os.path.abspath(p) for p in self.outputs}) < len(self.outputs):
            raise MisrError(f"{self.output}: --output, --uncertainty and --kernels-out must be different files")
        for path in self.outputs:
            check_output_path(path, self.inputs, self.overwrite)


@dataclass(frozen=True)
class SuperResolveResult:
    """What a finished run wrote, and where it ran."""

    output: str
    uncertainty: str | None
    frames: list[str]
    device: str
    seconds: float
    warnings: list[str] = field(default_factory=list)
    tags: dict[str, Any] = field(default_factory=dict)


def super_resolve_files(request: SuperResolveRequest, progress: Reporter | None = None,
                        engine: Engine | None = None) -> SuperResolveResult:
    """Run `request`, reporting to `progress` (events start, progress, warning, done).

    `engine`: an already loaded network (a batch of scenes loads it once); by default the
    request's model, weights, backend, device and precision are loaded after the inputs are
    known to be good. Raises MisrError (one line) on bad input; no output is left behind then.
    """
    progress = progress or _Silent()
    started = time.perf_counter()
    request.check()
    # every input checked, then read window by window: memory does not grow with the raster
    stack, selection_warnings = select_frames(
        open_stack(request.frames, request.masks, request.band, align=request.align), request.max_frames)
    from .inference.engine import open_engine
    from .inference.tiled import super_resolve_strips
    if engine is None:
        engine = open_engine(request.backend, request.model, request.weights, request.device, request.precision)
    warnings = stack.warnings + selection_warnings
    for warning in warnings:
        progress.event("warning", message=warning)
    progress.event("start", frames=len(stack.paths), device=engine.device, model=engine.model,
                   width=stack.grid.width, height=stack.grid.height, backend=engine.backend,
                   provider=engine.provider, precision=engine.precision)
    tags = output_tags(request, engine, stack)

    def warn(message: str) -> None:
        warnings.append(message)
        progress.event("warning", message=message)
    kernels: list[dict] = []
    strips = super_resolve_strips(stack, engine.runner, None, request.tile_size, request.overlap, progress.update,
                                  batch_size=request.batch_size, ttf_steps=request.ttf_steps, on_warning=warn,
                                  on_kernels=kernels.append)
    rasters = [request.output] + ([request.uncertainty] if request.uncertainty else [])
    with atomic_outputs(request.outputs) as temporaries:  # the files appear together, or none
        # row strips are written as the tiles finish them: the outputs are never held whole
        write_strips(strips, temporaries[:len(rasters)], stack.grid.refined(SCALE),
                     [{**tags, "MISR_PRODUCT": product} for product, _ in PRODUCTS],
                     [description for _, description in PRODUCTS], labels=rasters)
        if request.kernels_out:
            _write_kernels(temporaries[-1], kernels, tags)
    result = SuperResolveResult(os.path.abspath(request.output),
                                os.path.abspath(request.uncertainty) if request.uncertainty else None,
                                list(stack.paths), str(engine.device),
                                round(time.perf_counter() - started, 2), warnings, tags)
    progress.event("done", output=result.output, uncertainty=result.uncertainty, device=result.device,
                   seconds=result.seconds, summary=_summary(request, result))
    return result


def _write_kernels(path: str, reports: list[dict], tags: dict[str, Any]) -> None:
    """The fine-tuning's per-frame kernels (``finetune.kernel_report``) as JSON, with the run's
    model and weights; an empty frame list when fine-tuning was skipped (too few frames)."""
    report = reports[0] if reports else {"frames": [], "skipped": "too few frames to fine-tune"}
    provenance = {key: tags[key] for key in ("MISR_MODEL", "MISR_WEIGHTS", "MISR_WEIGHTS_SHA256",
                                             "MISR_ENGINE_VERSION")}
    with open(path, "w") as handle:
        json.dump({**provenance, **report}, handle, indent=1)


def limits() -> dict[str, int]:
    """The bounds of a run's options (`misr models --json`; the plugin checks against them)."""
    from .inference.finetune import DEFAULT_STEPS as DEFAULT_TTF_STEPS, MIN_FRAMES as MIN_TTF_FRAMES
    return {"scale": SCALE, "min_tile_size": MIN_TILE_SIZE, "default_tile_size": DEFAULT_TILE_SIZE,
            "default_overlap": DEFAULT_OVERLAP, "max_frames": DEFAULT_MAX_FRAMES,
            "min_ttf_frames": MIN_TTF_FRAMES, "default_ttf_steps": DEFAULT_TTF_STEPS}


def output_tags(request: SuperResolveRequest, engine: Engine, stack: LazyStack) -> dict[str, Any]:
    """The provenance tags written into both outputs."""
    import torch

    return {"MISR_MODEL": engine.model, "MISR_WEIGHTS": engine.weights.name,
            "MISR_WEIGHTS_SHA256": engine.weights_sha256, "MISR_FRAMES": len(stack.paths),
            "MISR_FRAME_FILES": json.dumps([os.path.basename(p) for p in stack.paths]),
            "MISR_SCALE": SCALE, "MISR_ENGINE_VERSION": __version__, "MISR_DEVICE": engine.device,
            "MISR_BACKEND": engine.backend, "MISR_PROVIDER": engine.provider,
            "MISR_PRECISION": engine.precision, "MISR_TORCH_VERSION": torch.__version__,
            "MISR_TTF_STEPS": request.ttf_steps,
            **({"MISR_ONNX_MODEL": engine.onnx.name} if engine.onnx else {})}


def _summary(request: SuperResolveRequest, result: SuperResolveResult) -> str:
    """The line a person reads when the run is done."""
    return (f"wrote {request.output}" + (f" and {request.uncertainty}" if request.uncertainty else "")
            + f" ({len(result.frames)} frames, {result.device}, {result.seconds} s)")
