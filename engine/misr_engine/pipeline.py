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
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import Any, Iterable, Iterator, Protocol, Sequence

import numpy as np

from typing import TYPE_CHECKING

from . import SCALE, __version__
from .errors import MisrError
from .inference.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, MIN_TILE_SIZE
from .models.registry import DEFAULT_MODEL
from .rasters.bands import band_identity, resolve_bands
from .rasters.masks import AUTO, MaskOptions
from .rasters.outputs import atomic_outputs, check_output_path
from .rasters.stack import DEFAULT_MAX_FRAMES, LazyStack, open_stack, select_frames
from .rasters.writer import write_strips
from .registration.screening import DEFAULT_DILATION, MIN_FRAMES as MIN_SCREENED_FRAMES, Screening, screen_stack

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
    bands: Sequence[int] | str | None = None
    """Several bands (1-based), or ``all``: one registration, every band super-resolved."""
    mask_kind: Sequence[str] = (AUTO,)
    """One kind for every mask, or one per mask (``rasters.masks``)."""
    mask_snow: bool = False
    mask_dark_areas: bool = False
    mask_dilation: int | None = None
    """Pixels the unusable areas grow by (None: 0 for given masks, the screening's default)."""
    auto_mask: bool = True
    """Without masks, screen clouds and shadows from the time series (``registration.screening``)."""
    device: str = "auto"
    backend: str = "torch"
    precision: str = "fp32"
    batch_size: int | None = None
    tile_size: int = DEFAULT_TILE_SIZE
    overlap: int = DEFAULT_OVERLAP
    max_frames: int = DEFAULT_MAX_FRAMES
    ttf_steps: int = 0
    align: bool = False
    overwrite: bool = False

    @property
    def mask_options(self) -> MaskOptions:
        """How the given masks are read."""
        return MaskOptions(tuple(self.mask_kind), self.mask_snow, self.mask_dark_areas, self.mask_dilation or 0)

    @property
    def screening(self) -> Screening | None:
        """The automatic screening this run applies (None: masks given, or turned off)."""
        if self.masks or not self.auto_mask:
            return None
        return Screening(dilation=DEFAULT_DILATION if self.mask_dilation is None else self.mask_dilation)

    @property
    def inputs(self) -> list[str]:
        """Every file the run reads."""
        return list(self.frames) + list(self.masks or []) + ([self.weights] if self.weights else [])

    @property
    def outputs(self) -> list[str]:
        """The files the run writes: the SR, then the uncertainty if asked for."""
        return [self.output] + ([self.uncertainty] if self.uncertainty else [])

    def check(self) -> None:
        """Refuse options out of range and unusable outputs, each in one line (nothing is read yet)."""
        for name, value, low in (("tile-size", self.tile_size, MIN_TILE_SIZE), ("overlap", self.overlap, 0),
                                 ("max-frames", self.max_frames, 1), ("ttf-steps", self.ttf_steps, 0)):
            if value < low:
                unit = " LR pixels" if name == "tile-size" else ""
                raise MisrError(f"--{name} {value}: must be at least {low}{unit}")
        if self.band is not None and self.bands is not None:
            raise MisrError("--band and --bands: give only one of them")
        self.mask_options.check()
        if self.batch_size is not None and self.batch_size < 1:
            raise MisrError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.ttf_steps and self.backend != "torch":
            raise MisrError("--ttf-steps needs --backend torch: ONNX Runtime runs fixed weights")
        if self.uncertainty and os.path.abspath(self.uncertainty) == os.path.abspath(self.output):
            raise MisrError(f"{self.output}: --output and --uncertainty are the same file")
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
    stack = open_stack(request.frames, request.masks, request.band, align=request.align,
                       mask_options=request.mask_options, bands=resolve_bands(request.bands, request.frames[0]))
    stack, screening_notes = _screened(stack, request.screening)
    stack, selection_warnings = select_frames(stack, request.max_frames)
    from .inference.engine import open_engine
    from .inference.tiled import super_resolve_strips
    from .registration.streamed import stack_shifts
    if engine is None:
        engine = open_engine(request.backend, request.model, request.weights, request.device, request.precision)
    warnings = stack.warnings + selection_warnings
    for note in list(getattr(stack, "notes", [])) + screening_notes:
        progress.event("log", message=note)
    for warning in warnings:
        progress.event("warning", message=warning)
    progress.event("start", frames=len(stack.paths), device=engine.device, model=engine.model,
                   width=stack.grid.width, height=stack.grid.height, backend=engine.backend,
                   provider=engine.provider, precision=engine.precision)
    tags = output_tags(request, engine, stack)

    def warn(message: str) -> None:
        warnings.append(message)
        progress.event("warning", message=message)
    count = stack.band_count
    shifts = stack_shifts(stack) if count > 1 else None  # one registration for every band

    def band_strips(index: int):
        def update(fraction: float, message: str = "") -> None:
            progress.update((index + fraction) / count, f"band {index + 1}/{count}: {message}" if count > 1 else message)
        strips = super_resolve_strips(stack.band(index), engine.runner, None, request.tile_size, request.overlap,
                                      update, batch_size=request.batch_size, ttf_steps=request.ttf_steps,
                                      on_warning=warn, shifts=shifts)
        return (replace(strip, band=index + 1) for strip in _clipped(strips, stack.value_range))
    descriptions, colours = _band_descriptions(stack)
    with atomic_outputs(request.outputs) as temporaries:  # both files appear together, or neither
        # row strips are written as the tiles finish them: the outputs are never held whole
        write_strips(chain.from_iterable(band_strips(i) for i in range(count)), temporaries,
                     stack.grid.refined(SCALE), [{**tags, "MISR_PRODUCT": product} for product, _ in PRODUCTS],
                     descriptions, labels=request.outputs, bands=count, colours=colours)
    result = SuperResolveResult(os.path.abspath(request.output),
                                os.path.abspath(request.uncertainty) if request.uncertainty else None,
                                list(stack.paths), str(engine.device),
                                round(time.perf_counter() - started, 2), warnings, tags)
    progress.event("done", output=result.output, uncertainty=result.uncertainty, device=result.device,
                   seconds=result.seconds, summary=_summary(request, result))
    return result


def _screened(stack: LazyStack, screening: Screening | None) -> tuple[Any, list[str]]:
    """The stack screened for clouds and shadows when `screening` is asked for (no masks), and
    the note saying so (or why it could not be)."""
    if screening is None:
        return stack, []
    if stack.shape[0] < MIN_SCREENED_FRAMES:
        return stack, [f"no cloud masks and only {stack.shape[0]} frame(s): clouds cannot be screened "
                       f"automatically (that needs {MIN_SCREENED_FRAMES} frames); they will show in the result"]
    return screen_stack(stack, screening), [
        "no cloud masks: clouds and shadows screened automatically from the time series (pixels much brighter "
        f"or darker than the other dates, grown by {screening.dilation} px); --no-auto-mask turns this off"]


def _clipped(strips: Iterable[Any], value_range: tuple[float, float] | None) -> Iterator[Any]:
    """The SR of `strips` clipped to the range of the input's integer data type (uint16: >= 0)."""
    for strip in strips:
        if value_range is not None:
            np.clip(strip.sr, value_range[0], value_range[1], out=strip.sr)
        yield strip


def _band_descriptions(stack: Any) -> tuple[list, list[int] | None]:
    """The band descriptions of both outputs and the SR's colour interpretations: the input bands'
    own (``B04``, red) for a multi-band run, the products' names for one band."""
    if stack.band_count == 1:
        return [description for _, description in PRODUCTS], None
    identities = [band_identity(band) for band in stack.first_bands]
    names = [name or f"band {band.band}" for (name, _), band in zip(identities, stack.first_bands)]
    return [names, [f"{name}: uncertainty (Laplace scale)" for name in names]], [colour for _, colour in identities]


def limits() -> dict[str, int]:
    """The bounds of a run's options (`misr models --json`; the plugin checks against them)."""
    from .inference.finetune import MIN_FRAMES as MIN_TTF_FRAMES
    return {"scale": SCALE, "min_tile_size": MIN_TILE_SIZE, "default_tile_size": DEFAULT_TILE_SIZE,
            "default_overlap": DEFAULT_OVERLAP, "max_frames": DEFAULT_MAX_FRAMES,
            "min_ttf_frames": MIN_TTF_FRAMES}


def output_tags(request: SuperResolveRequest, engine: Engine, stack: LazyStack) -> dict[str, Any]:
    """The provenance tags written into both outputs."""
    import torch

    return {"MISR_MODEL": engine.model, "MISR_WEIGHTS": engine.weights.name,
            "MISR_WEIGHTS_SHA256": engine.weights_sha256, "MISR_FRAMES": len(stack.paths),
            "MISR_FRAME_FILES": json.dumps([os.path.basename(p) for p in stack.paths]),
            "MISR_SCALE": SCALE, "MISR_ENGINE_VERSION": __version__, "MISR_DEVICE": engine.device,
            "MISR_BACKEND": engine.backend, "MISR_PROVIDER": engine.provider,
            "MISR_PRECISION": engine.precision, "MISR_TORCH_VERSION": torch.__version__,
            "MISR_TTF_STEPS": request.ttf_steps, "MISR_AUTO_MASK": "yes" if hasattr(stack, "screening") else "no",
            "MISR_BANDS": json.dumps([band.band for band in stack.first_bands]),
            **({"MISR_ONNX_MODEL": engine.onnx.name} if engine.onnx else {})}


def _summary(request: SuperResolveRequest, result: SuperResolveResult) -> str:
    """The line a person reads when the run is done."""
    return (f"wrote {request.output}" + (f" and {request.uncertainty}" if request.uncertainty else "")
            + f" ({len(result.frames)} frames, {result.device}, {result.seconds} s)")
