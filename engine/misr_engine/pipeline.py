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
from dataclasses import dataclass, field, fields, replace
from functools import partial
from itertools import chain
from typing import Any, Iterable, Iterator, Protocol, Sequence

import numpy as np

from typing import TYPE_CHECKING

from . import SCALE, __version__, signals
from .errors import MisrError
from .files import same_file
from .inference.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, MIN_TILE_SIZE
from .imaging.mtf import DETECTOR_MTF, ENGINE_MTF, MTF_RANGE, psf_sigma_from_mtf
from .models.registry import DEFAULT_MODEL
from .progress import Say, staged
from .rasters.bands import band_identity, parse_bands, resolve_bands
from .rasters.masks import AUTO, MaskOptions
from .rasters.outputs import atomic_outputs, check_outputs
from .rasters.writer import check_geotiff_name
from .rasters.disk import check_free_space
from .rasters.selection import clearest_selection
from .rasters.selection import DEFAULT_MAX_FRAMES
from .rasters.stack import LazyStack, StackPlan, open_planned, plan_stack
from .rasters.writer import write_strips
from .registration.screening import DEFAULT_DILATION, MIN_FRAMES as MIN_SCREENED_FRAMES, Screening, screen_stack

if TYPE_CHECKING:  # torch is imported only once the inputs are known to be good (slow: ~1 s)
    from .inference.budget import MemoryEstimate
    from .inference.engine import Engine

SCREENING_POOL = 2
"""Without masks, at most this many times --max-frames frames are screened to pick the clearest:
screening holds each frame's registration and screening windows (about 30-70 MB a frame on
1500-3000 pixel rasters), so an archive of hundreds of frames is not screened whole."""

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
    kernels_out: str | None = None
    sensor_mtf: Sequence[float] | None = None
    """The sensor's MTF at the input's Nyquist frequency, one for every band or one per band, for the
    back-projection's PSF (``imaging.mtf``; None: the engine's Gaussian of ``backprojection.PSF_SIGMA``)."""
    reference_frame: str | None = None
    """One of `frames`: where the surface differs between the dates, the SR shows it as this frame
    does (``inference.frame_state``; None: the clear-temporal mean of the frames)."""
    keep_noisy_frames: bool = False
    """Keep the frames far noisier than the others (``inference.tiled.leave_out_noisy``; default:
    left out, each named in a warning)."""
    align: bool = False
    extent: Sequence[float] | None = None
    """(xmin, ymin, xmax, ymax) in the first frame's CRS: only the pixels it touches are read and
    super-resolved, snapped outward to whole pixels (``rasters.stack.extent_window``; None: the
    whole frames)."""
    overwrite: bool = False
    memory_budget: str | None = None  # bytes or "6G"; default: MISR_MEMORY_BUDGET, or half the memory

    @property
    def mask_options(self) -> MaskOptions:
        """How the given masks are read."""
        kinds = (self.mask_kind,) if isinstance(self.mask_kind, str) else tuple(self.mask_kind)
        return MaskOptions(kinds, self.mask_snow, self.mask_dark_areas, self.mask_dilation or 0)

    @property
    def screening(self) -> Screening | None:
        """The automatic screening this run applies (None: masks given, or turned off)."""
        if self.masks or not self.auto_mask:
            return None
        return Screening(dilation=DEFAULT_DILATION if self.mask_dilation is None else self.mask_dilation)

    @property
    def sensor_mtfs(self) -> list[float]:
        """The stated MTFs as a list (one number is taken as a list of one)."""
        value = self.sensor_mtf
        return [] if value is None else [float(value)] if isinstance(value, (int, float, str)) else [float(v) for v in value]

    def psf_sigmas(self, band_count: int) -> list[float | None]:
        """HR px, per band: the back-projection's Gaussian PSF for ``sensor_mtf`` (None: the engine's
        default). MisrError unless one value or one per band was given."""
        values = self.sensor_mtfs
        if not values:
            return [None] * band_count
        if len(values) not in (1, band_count):
            raise MisrError(f"--sensor-mtf: {len(values)} values for {band_count} band{'s' * (band_count > 1)} "
                            "(give one for every band, or one per band)")
        return [psf_sigma_from_mtf(value) for value in values * (band_count // len(values))]

    def reference_index(self, paths: Sequence[str]) -> int | None:
        """Where `reference_frame` is in `paths` (the same file), None when no frame is named or
        it is not there."""
        if self.reference_frame is None:
            return None
        for index, path in enumerate(paths):
            if same_file(path, self.reference_frame):
                return index
        return None

    @property
    def inputs(self) -> list[str]:
        """Every file the run reads."""
        return list(self.frames) + list(self.masks or []) + ([self.weights] if self.weights else [])

    @property
    def rasters(self) -> list[str]:
        """The rasters the run writes: the SR, then the uncertainty if asked for."""
        return [self.output] + ([self.uncertainty] if self.uncertainty else [])

    @property
    def outputs(self) -> list[str]:
        """The files the run writes: its rasters, then the kernels (JSON) if asked for."""
        return self.rasters + ([self.kernels_out] if self.kernels_out else [])

    def check(self) -> list[str]:
        """Refuse options out of range and unusable outputs, each in one line (nothing is read yet).
        Partial files of killed runs on the outputs are removed: returns a note for each."""
        for name, value, low in (("tile-size", self.tile_size, MIN_TILE_SIZE), ("overlap", self.overlap, 0),
                                 ("max-frames", self.max_frames, 1), ("ttf-steps", self.ttf_steps, 0)):
            if value < low:
                unit = " LR pixels" if name == "tile-size" else ""
                raise MisrError(f"--{name} {value}: must be at least {low}{unit}")
        if self.band is not None and self.bands is not None:
            raise MisrError("--band and --bands: give only one of them")
        parse_bands(self.bands)
        self.mask_options.check()
        if self.batch_size is not None and self.batch_size < 1:
            raise MisrError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.ttf_steps and self.backend != "torch":
            raise MisrError("--ttf-steps needs --backend torch: ONNX Runtime runs fixed weights")
        if self.ttf_steps:
            from .inference.finetune import MAX_STEPS
            if self.ttf_steps > MAX_STEPS:
                raise MisrError(f"--ttf-steps {self.ttf_steps}: at most {MAX_STEPS} (each step takes about 2 s "
                                "on 2 CPU cores; the model card's runs use 50 to 200)")
        for value in self.sensor_mtfs:
            try:
                psf_sigma_from_mtf(value)
            except ValueError:
                low, high = MTF_RANGE
                raise MisrError(f"--sensor-mtf {value:g}: must be between {low:g} and {high:g} (the MTF at the "
                                f"input's Nyquist frequency; a square detector alone gives {DETECTOR_MTF:.2f})") from None
        if self.reference_frame is not None and self.reference_index(self.frames) is None:
            raise MisrError(f"--reference-frame {self.reference_frame}: not one of --frames (name the frame whose "
                            "date the SR should show)")
        if self.extent is not None:
            values = list(self.extent)
            if len(values) != 4 or not all(np.isfinite(values)) or values[0] >= values[2] or values[1] >= values[3]:
                raise MisrError(f"--extent {' '.join(f'{v:g}' for v in values)}: give XMIN YMIN XMAX YMAX with "
                                "XMIN < XMAX and YMIN < YMAX, in the frames' CRS")
        if self.kernels_out and not self.ttf_steps:
            raise MisrError("--kernels-out needs --ttf-steps: the kernels are estimated by the fine-tuning")
        for path in self.rasters:
            check_geotiff_name(path)
        return check_outputs(self.outputs, self.inputs, self.overwrite)


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
    left_out: list[str] = field(default_factory=list)
    """Frames read but left out as far noisier than the others ('a.tif (band 2)': of that band only)."""
    estimated_memory: int = 0
    """The peak memory (bytes) the up-front check estimated for the run (``memory_estimate``)."""


def super_resolve_files(request: SuperResolveRequest, progress: Reporter | None = None,
                        engine: Engine | None = None) -> SuperResolveResult:
    """Run `request`, reporting to `progress` (events start, progress, warning, done).

    `engine`: an already loaded network (a batch of scenes loads it once); by default the
    request's model, weights, backend, device and precision are loaded after the inputs are
    known to be good. Raises MisrError (one line) on bad input; no output is left behind then.
    """
    progress = progress or _Silent()
    started = time.perf_counter()
    notes = request.check()
    # every input's header checked, then its pixels read one file at a time; only the frames
    # used stay open, read window by window: memory does not grow with the raster
    plan = plan_stack(request.frames, request.masks, request.band, align=request.align,
                      mask_options=request.mask_options, bands=resolve_bands(request.bands, request.frames[0]),
                      extent=None if request.extent is None else tuple(request.extent))
    psf_sigmas = request.psf_sigmas(len(plan.bands) or 1)
    resource_notes, estimated = check_resources(request, plan, engine)
    notes += resource_notes
    stack, spares, screening_notes = _opened(plan, request, progress=progress)
    stack, replaced, replacement_notes = _noisy_frames_replaced(plan, stack, spares, request, progress)
    state = request.reference_index(stack.paths)
    if request.reference_frame is not None and state is None:
        raise MisrError(f"--reference-frame {request.reference_frame}: not among the frames used (fully cloudy or "
                        "nodata, the same pixels as another frame, or screened out as cloud): no date to show")
    from .inference.engine import open_engine
    from .inference.tiled import super_resolve_strips
    from .registration.streamed import stack_registration
    if engine is None:
        engine = open_engine(request.backend, request.model, request.weights, request.device, request.precision)
    warnings = notes + stack.warnings + replacement_notes
    for note in list(stack.notes) + screening_notes:
        progress.event("log", message=note)
    for warning in warnings:
        progress.event("warning", message=warning)
    grid = stack.grid if plan.area is None else plan.area.grid  # what is written (less the context read)
    progress.event("start", frames=len(stack.paths), device=engine.device, model=engine.model,
                   width=grid.width, height=grid.height, backend=engine.backend,
                   provider=engine.provider, precision=engine.precision)
    tags = output_tags(request, engine, stack)

    def warn(message: str) -> None:
        warnings.append(message)
        progress.event("warning", message=message)
    count = stack.band_count
    registration = stack_registration(stack) if count > 1 else None  # one registration for every band
    kernels: list[dict] = []
    used: dict[int, list[str]] = {}  # band index -> the frames it used (noisy ones left out)
    widths: dict[int, float] = {}  # band index -> its back-projection's PSF width

    def band_strips(index: int) -> Iterator[Any]:
        def update(fraction: float, message: str = "") -> None:
            progress.update((index + fraction) / count, f"band {index + 1}/{count}: {message}" if count > 1 else message)
        strips = super_resolve_strips(stack.band(index), engine.runner, None, request.tile_size, request.overlap,
                                      update, batch_size=request.batch_size, ttf_steps=request.ttf_steps,
                                      on_warning=warn if count == 1 else lambda message: warn(f"band {index + 1}: {message}"),
                                      on_kernels=kernels.append, registration=registration,
                                      psf_sigma=psf_sigmas[index], state=state,
                                      keep_noisy_frames=request.keep_noisy_frames,
                                      on_frames_used=partial(used.__setitem__, index),
                                      on_psf_sigma=partial(widths.__setitem__, index))
        return (replace(strip, band=index + 1) for strip in _clipped(strips, stack.value_range))
    descriptions, colours = _band_descriptions(stack)
    rasters = request.rasters
    strips = chain.from_iterable(band_strips(i) for i in range(count))
    if plan.area is not None and plan.window is not None:  # read with context around the area: write the area
        strips = _cropped(strips, *plan.area.within(plan.window))
    with atomic_outputs(request.outputs, request.overwrite) as temporaries:  # the files appear together, or none
        # row strips are written as the tiles finish them: the outputs are never held whole
        write_strips(strips, temporaries[:len(rasters)],
                     grid.refined(SCALE), [{**tags, "MISR_PRODUCT": product} for product, _ in PRODUCTS],
                     descriptions, labels=rasters, bands=count, colours=colours, units=stack.units,
                     closing_tags=lambda: {**frame_tags(*frames_used(stack.paths, used, replaced)),
                                           **psf_tags(widths)})
        if request.kernels_out:
            _write_kernels(temporaries[-1], kernels, tags)
    frames, left_out = frames_used(stack.paths, used, replaced)
    result = SuperResolveResult(os.path.abspath(request.output),
                                os.path.abspath(request.uncertainty) if request.uncertainty else None,
                                frames, str(engine.device), round(time.perf_counter() - started, 2), warnings,
                                {**tags, **frame_tags(frames, left_out), **psf_tags(widths)}, left_out, estimated)
    progress.event("done", output=result.output, uncertainty=result.uncertainty, device=result.device,
                   seconds=result.seconds, frames=len(result.frames), summary=_summary(request, result))
    return result


def frames_used(paths: Sequence[str], used: dict[int, list[str]],
                replaced: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """The frames of `paths` that some band used (`used`: band index -> its frames), and the names
    of those left out: `replaced` (left out of every band before the run, another frame in their
    place), then those a band left out: 'a.tif', or 'a.tif (band 2)' when other bands used it."""
    kept = [path for path in paths if any(path in frames for frames in used.values())]
    left_out = [os.path.basename(path) for path in replaced]
    for path in paths:
        bands = [index + 1 for index, frames in sorted(used.items()) if path not in frames]
        if bands:
            name = os.path.basename(path)
            left_out.append(name if path not in kept else f"{name} (band{'s' * (len(bands) > 1)} "
                                                          f"{', '.join(map(str, bands))})")
    return kept, left_out


def frame_tags(kept: Sequence[str], left_out: Sequence[str]) -> dict[str, Any]:
    """The tags that say which frames the run used and left out (``frames_used``: known once every
    band has run, so they are written as the outputs close)."""
    return {"MISR_FRAMES": len(kept), "MISR_FRAME_FILES": json.dumps([os.path.basename(p) for p in kept]),
            **({"MISR_FRAMES_LEFT_OUT": json.dumps(left_out)} if left_out else {})}


def psf_tags(widths: dict[int, float]) -> dict[str, Any]:
    """The tag that says the back-projection's PSF width each band used (HR px, ``inference.psf_width``:
    stated with --sensor-mtf or chosen per scene; known once the band has run)."""
    return {"MISR_PSF_SIGMA": json.dumps([round(widths[index], 4) for index in sorted(widths)])}


def _noisy_frames_replaced(plan: StackPlan, stack: Any, spares: int, request: SuperResolveRequest,
                           progress: Reporter) -> tuple[Any, list[str], list[str]]:
    """With usable frames beyond --max-frames (`spares`), the frames a run would leave out of
    every band as far noisier than the others (``inference.tiled.noisy_in_every_band``) are
    replaced by the next clearest ones, themselves measured in turn. Returns the stack, the
    frames replaced and the warnings naming them and the frames used instead."""
    if request.keep_noisy_frames or not spares:
        return stack, [], []
    from .inference.tiled import noisy_frame_notes, noisy_in_every_band
    replaced: list[str] = []
    notes: list[str] = []
    say = staged(partial(progress.update, 0.0), "measuring each frame's noise")
    while noisy := noisy_in_every_band(stack, request.tile_size, request.overlap,
                                       request.reference_index(stack.paths), say):
        excluded = [plan.frames.index(path) for path in replaced + [stack.paths[index] for index, _ in noisy]]
        wider = _opened(plan, request, excluded)[0]
        added = [path for path in wider.paths if path not in stack.paths]
        if not added:  # no usable frame left: the run leaves them out itself
            break
        replaced += [stack.paths[index] for index, _ in noisy]
        notes += noisy_frame_notes(noisy, stack.paths, [index for index, _ in noisy], False)
        notes.append(f"used in place of the frames left out as too noisy (the next clearest): "
                     f"{', '.join(os.path.basename(path) for path in added)}")
        stack = wider
    return stack, replaced, notes


def _opened(plan: StackPlan, request: SuperResolveRequest, excluded: Sequence[int] = (),
            progress: Reporter | None = None) -> tuple[Any, int, list[str]]:
    """The frames a run uses, opened (``open_planned``; planned frames `excluded` left aside) and
    screened for clouds where asked (``_screened``): the --max-frames clearest, the number of
    usable frames beyond them, and the notes on the screening.

    Given masks say how clear each frame is before anything is opened. Without them every frame
    looks clear until screened, so with more usable frames than --max-frames up to SCREENING_POOL
    times as many are screened (those with the most valid pixels) and the clearest once screened
    are kept (the first ones given were kept before, half-cloudy or not: on the sample, 5 of its 9
    frames asked for, 2 of those half cloudy).
    `progress` hears a `log` event before the spare frames are screened (a minute or more for a
    large archive)."""
    required = request.reference_index(plan.frames)
    if request.screening is None:
        stack = open_planned(plan, request.max_frames, required, excluded)
        return stack, stack.spares, []
    every = open_planned(plan, request.max_frames and SCREENING_POOL * request.max_frames, required, excluded)
    if progress is not None and request.max_frames and len(every.paths) > request.max_frames:
        pool = f" (those with the most valid pixels of {len(every.paths) + every.spares})" if every.spares else ""
        progress.event("log", message=f"no cloud masks: screening {len(every.paths)} usable frames{pool} for clouds "
                                      f"to keep the {request.max_frames} clearest")
    screened, notes = _screened(every, request.screening, None if progress is None else partial(progress.update, 0.0))
    limit = request.max_frames or len(screened.paths)
    if len(screened.paths) <= limit:
        return screened, every.spares, notes
    shown = plan.frames[required] if required is not None else None
    keep, said = clearest_selection(screened.paths, screened.clear_fraction, limit,
                                    screened.paths.index(shown) if shown in screened.paths else None,
                                    "clearest once screened for clouds")
    return screened.subset(keep, said), every.spares + len(screened.paths) - limit, notes


def _screened(stack: LazyStack, screening: Screening | None, say: Say | None = None) -> tuple[Any, list[str]]:
    """The stack screened for clouds and shadows when `screening` is asked for (no masks; `say`
    hears its steps), and the note saying so (or why it could not be)."""
    if screening is None:
        return stack, []
    if stack.shape[0] < MIN_SCREENED_FRAMES:
        return stack, [f"no cloud masks and only {stack.shape[0]} frame(s): clouds cannot be screened "
                       f"automatically (that needs {MIN_SCREENED_FRAMES} frames); they will show in the result"]
    return screen_stack(stack, screening, say=say), [
        "no cloud masks: clouds and shadows screened automatically from the time series (pixels much brighter "
        f"or darker than the other dates, grown by {screening.dilation} px); --no-auto-mask turns this off"]


def _cropped(strips: Iterable[Any], rows: slice, columns: slice) -> Iterator[Any]:
    """The strips' SR pixels within LR `rows` and `columns` of the raster read, their rows counted
    from the first of them (the area asked for, out of the area read around it)."""
    top, bottom = rows.start * SCALE, rows.stop * SCALE
    left, right = columns.start * SCALE, columns.stop * SCALE
    for strip in strips:
        first, last = max(strip.row0, top), min(strip.row0 + len(strip.sr), bottom)
        if first < last:
            kept = slice(first - strip.row0, last - strip.row0)
            yield replace(strip, row0=first - top, sr=strip.sr[kept, left:right], scale=strip.scale[kept, left:right])


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


def _write_kernels(path: str, reports: list[dict], tags: dict[str, Any]) -> None:
    """The fine-tuning's per-frame kernels (``finetune.kernel_report``) as JSON, with the run's
    model and weights; an empty frame list when fine-tuning was skipped (too few frames)."""
    report = reports[0] if reports else {"frames": [], "skipped": "too few frames to fine-tune"}
    provenance = {key: tags[key] for key in ("MISR_MODEL", "MISR_WEIGHTS", "MISR_WEIGHTS_SHA256",
                                             "MISR_ENGINE_VERSION")}
    with open(path, "w") as handle:
        json.dump({**provenance, **report}, handle, indent=1)


def limits() -> dict[str, Any]:
    """The bounds of a run's options (`misr models --json`; the plugin checks against them)."""
    from .inference.finetune import (DEFAULT_STEPS as DEFAULT_TTF_STEPS, MAX_STEPS as MAX_TTF_STEPS,
                                     MIN_FRAMES as MIN_TTF_FRAMES)
    return {"scale": SCALE, "min_tile_size": MIN_TILE_SIZE, "default_tile_size": DEFAULT_TILE_SIZE,
            "default_overlap": DEFAULT_OVERLAP, "max_frames": DEFAULT_MAX_FRAMES, "screening_pool": SCREENING_POOL,
            "min_ttf_frames": MIN_TTF_FRAMES, "max_ttf_steps": MAX_TTF_STEPS, "default_ttf_steps": DEFAULT_TTF_STEPS,
            "sensor_mtf_range": list(MTF_RANGE), "engine_mtf": round(ENGINE_MTF, 3),
            "other_footprints": True}  # frames whole pixels off the first frame's grid are read as they are


def check_resources(request: SuperResolveRequest, plan: StackPlan,
                    engine: Engine | None = None) -> tuple[list[str], int]:
    """Before any pixel is read: the weights checked without loading them (config bounds, every
    tensor by name and shape), the device, the run's memory (``memory_estimate``) against the
    budget and both outputs' size against the free disk space; one-line MisrErrors. Returns
    warnings and the memory estimated (bytes)."""
    from .inference.budget import check_memory, memory_budget

    estimated = memory_estimate(request, plan, engine)
    budget, source = memory_budget(request.memory_budget)
    check_memory(estimated, budget, source, plan.grid, plan.frames[0])
    notes = check_free_space(request.rasters, plan.grid.refined(SCALE), plan.frames[0], len(plan.band_numbers))
    return notes, estimated.total


def memory_estimate(request: SuperResolveRequest, plan: StackPlan, engine: Engine | None = None) -> MemoryEstimate:
    """The run's peak memory, from the headers (``inference.budget.estimate``): the weights are
    checked on the way (planned without loading them when no `engine` is open yet)."""
    with signals.deferred():  # torch, scipy, scikit-image: ~1 s; a signal acts after, not inside an import
        from .inference.backends import resolve_device
        from .inference.budget import estimate, warp_bytes
        from .inference.finetune import TTF_WINDOW
        from .inference.tiled import EDGE_CONTEXT
        from .models.weights import plan_model

    grid, frames = plan.grid, min(request.max_frames, len(plan.frames))
    if engine is not None:
        device, config, network = engine.device, getattr(getattr(engine.runner, "model", None), "config", None), 0
    elif request.weights and str(request.weights).endswith(".onnx"):
        device, config, network = ("cuda" if request.device.startswith("cuda") else "cpu"), None, 0
    else:
        model = plan_model(request.model, request.weights)
        config, network = model.config, model.parameter_bytes * (5 if request.ttf_steps else 1)  # + copy, grads, Adam
        device = str(resolve_device(request.device)) if request.backend == "torch" else \
            ("cuda" if request.device.startswith("cuda") else "cpu")
    tile = 0
    if device.startswith("cpu") and hasattr(config, "tile_bytes"):  # on a GPU, tiles halve on out of memory
        side = [min(request.tile_size, n) + 2 * EDGE_CONTEXT for n in (grid.height, grid.width)]
        tile = config.tile_bytes(frames, side[0] * side[1], request.batch_size or 1)
        if request.ttf_steps:  # training steps keep every activation for the backward pass
            tile = max(tile, 12 * config.tile_bytes(frames, min(TTF_WINDOW, grid.height) * min(TTF_WINDOW, grid.width)))
    bands = len(plan.band_numbers)  # each frame's bands are open (and warped) together; SR'd one at a time
    warped = min(sum(bool(f) * bands + m for f, m in plan.warp), (bands + 1) * frames)
    # a screened multi-band run reads the first band (the screening's evidence) beside each band
    rows_read = frames * (2 if bands > 1 and request.screening else 1)
    screened, pool = screened_counts(request, frames, len(plan.frames))
    return estimate(grid, rows_read, request.tile_size, outputs=len(request.rasters),
                    cache_bytes=plan.cache_bytes(frames, len(request.rasters)), network_bytes=network,
                    tile_bytes=tile, warp=warp_bytes(grid, warped, plan.rotated), registered=max(frames, pool),
                    screened=screened, pool=pool)


def screened_counts(request: SuperResolveRequest, used: int, planned: int) -> tuple[int, int]:
    """Without masks, the frames each row of tiles screens for clouds (the `used` ones) and the
    frames screened to choose them among the `planned` (``_opened``: 0 when there are no spare
    frames); (0, 0) when nothing is screened."""
    if request.screening is None or planned < MIN_SCREENED_FRAMES:
        return 0, 0
    return used, (min(SCREENING_POOL * used, planned) if planned > used else 0)


def output_tags(request: SuperResolveRequest, engine: Engine, stack: LazyStack) -> dict[str, Any]:
    """The provenance tags written into both outputs (and, as they close, ``frame_tags``)."""
    import torch

    return {"MISR_MODEL": engine.model, "MISR_WEIGHTS": engine.weights.name,
            "MISR_WEIGHTS_SHA256": engine.weights_sha256,
            "MISR_SCALE": SCALE, "MISR_ENGINE_VERSION": __version__, "MISR_DEVICE": engine.device,
            "MISR_BACKEND": engine.backend, "MISR_PROVIDER": engine.provider,
            "MISR_PRECISION": engine.precision, "MISR_TORCH_VERSION": torch.__version__,
            "MISR_TTF_STEPS": request.ttf_steps, "MISR_AUTO_MASK": "yes" if hasattr(stack, "screening") else "no",
            "MISR_BANDS": json.dumps([band.band for band in stack.first_bands]),
            "MISR_OPTIONS": json.dumps(run_options(request), sort_keys=True),
            **({"MISR_ONNX_MODEL": engine.onnx.name} if engine.onnx else {})}


NOT_PROVENANCE = ("output", "uncertainty", "kernels_out", "overwrite", "device", "batch_size", "weights")
"""Request fields that say where a run writes or runs, not what it computes (the weights are
tagged by their SHA-256)."""


def run_options(request: SuperResolveRequest) -> dict[str, Any]:
    """Every other request field, input paths made absolute: the MISR_OPTIONS tag, which tells
    whether an existing output came from the same run (`misr batch` skips it then)."""
    options: dict[str, Any] = {}
    for item in fields(request):
        value = getattr(request, item.name)
        if item.name in NOT_PROVENANCE:
            continue
        if item.name in ("frames", "masks") and value:
            value = [os.path.abspath(path) for path in value]
        if item.name == "reference_frame" and value:
            value = os.path.abspath(value)
        options[item.name] = list(value) if isinstance(value, (list, tuple)) else value
    return options


def _summary(request: SuperResolveRequest, result: SuperResolveResult) -> str:
    """The line a person reads when the run is done."""
    left_out = f"; left out as too noisy: {', '.join(result.left_out)}" if result.left_out else ""
    return (f"wrote {request.output}" + (f" and {request.uncertainty}" if request.uncertainty else "")
            + f" ({len(result.frames)} frames, {result.device}, {result.seconds} s{left_out})")
