"""Tiled super-resolution of a whole stack: normalise, run the network tile by tile, blend."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial

import numpy as np
import torch

from .. import SCALE
from ..errors import MisrError
from ..models.backprojection import PSF_SIGMA
from ..progress import Say, staged
from ..rasters.any_stack import AnyStack
from ..rasters.in_memory import read_cache_limit
from ..registration.stack import subpixel_phase
from ..registration.streamed import (
    RegisteredRows,
    TileRowInput,
    scene_radiometry,
    stack_registration,
)
from .backends import RefinedRunner, Runner, TileOutOfMemory, TorchRunner
from .consistency import gated_then_consistent
from .finetune import (
    MIN_FRAMES,
    TTF_WINDOW,
    FineTuneSettings,
    finetune_on_scene,
    kernel_report,
    window_origins,
)
from .frame_state import frame_look, toward_frame
from .held_out import held_out_misfits
from .normalisation import LEAVE_OUT_RATIO, Normalisation
from .psf_width import WIDTHS, kernel_start_width, scene_psf_sigma
from .tiling import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE_SIZE,
    MIN_TILE_SIZE,
    StripBlender,
    Tile,
    make_tiles,
)

TTF_PROGRESS_SHARE = 0.5  # of the progress bar, for test-time fine-tuning when it runs
TTF_WARN_SECONDS = 600  # fine-tuning expected to take longer than this is announced after its first step


ProgressCallback = Callable[[float, str], None]
KernelsCallback = Callable[[dict], None]  # hears the fine-tuned kernels (``finetune.kernel_report``)
FramesCallback = Callable[[list[str]], None]  # hears the paths of the frames a run uses (noisy ones left out)
WidthCallback = Callable[[float], None]  # hears the back-projection's PSF width (HR px) a run uses


LOG_SCALE_LIMIT = 30.0
"""The Laplace log-scale is clipped from below to -this before exp (float32 underflows near -88)."""
MAX_LOG_SCALE = 1.0
"""The Laplace log-scale (normalised units) is capped here: the expected absolute error never
exceeds e (2.7) scene spreads. The head extrapolates on scenes beyond its training: on a
low-contrast validation scene with a changed field it predicted 8,600 times the scene's level
(log-scale 12.4) where the error was 28 DN. Chosen on validation scenes by the Laplace NLL
(scripts/uncertainty_cap_study.py): the largest cap within 0.001 nats of the best; it binds on
0.3% of in-distribution pixels and changes no coverage by more than 0.1 point. Re-run with the
noise floor (docs/evaluation/uncertainty_cap_validation_noise_floor*.log): no scene of those
sets needs a cap any more (all caps within 0.0001 nats); the low-contrast set prefers tighter
caps because the head over-predicts there (90% intervals cover 97%), a calibration matter: the
cap is kept as the safety bound it was chosen as."""
SCENE_PSF_WIDTH = True
"""Without a stated sensor MTF, the back-projection's PSF width is chosen per scene (``psf_width``;
False: always ``backprojection.PSF_SIGMA``)."""
EDGE_CONTEXT = 2
"""LR pixels of mirrored context around every tile: the network sees them, the steps after it
count them as not observed (``consistency.back_project``)."""


@dataclass
class Strip:
    """Finished SR rows `row0` to `row0 + len(sr)` (full width), in input units, NaN where no frame is clear."""

    row0: int
    sr: np.ndarray
    scale: np.ndarray
    band: int = 1
    """Which band of a multi-band output the rows belong to (1-based)."""


def super_resolve(stack: AnyStack, model: torch.nn.Module | Runner, device: torch.device | None = None,
                  tile_size: int = DEFAULT_TILE_SIZE, overlap: int = DEFAULT_OVERLAP,
                  progress: ProgressCallback | None = None, *, precision: str = "fp32",
                  batch_size: int | None = None, ttf_steps: int | FineTuneSettings = 0,
                  on_warning: Callable[[str], None] | None = None,
                  on_kernels: KernelsCallback | None = None,
                  psf_sigma: float | None = None, state: int | None = None,
                  keep_noisy_frames: bool = False,
                  on_psf_sigma: WidthCallback | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Super-resolve `stack` x3. Returns (SR, Laplace scale) in input units, NaN where no frame is clear.

    `model` is a torch module (run on `device`, with `precision`) or a runner from `backends`;
    `ttf_steps` > 0 (or settings) fine-tunes (a copy of) a torch model on the scene first
    (``finetune``); `on_kernels` then hears the frames' estimated kernels. `psf_sigma` (HR px) is
    the sensor's Gaussian PSF for the back-projection (``consistency``; None: its default).
    `state` (a frame index): the SR shows the surface as that frame does where it departs from
    the others (``frame_state``; None: the clear-temporal mean). Frames far noisier than the
    others are named to `on_warning`, and left out from LEAVE_OUT_RATIO times the median frame's
    noise on unless `keep_noisy_frames` (``leave_out_noisy``). `on_psf_sigma` hears the
    back-projection's PSF width.
    """
    _, height, width = stack.shape
    sr = np.empty((height * SCALE, width * SCALE), np.float32)
    scale = np.empty_like(sr)
    for strip in super_resolve_strips(stack, model, device, tile_size, overlap, progress, precision=precision,
                                      batch_size=batch_size, ttf_steps=ttf_steps, on_warning=on_warning,
                                      on_kernels=on_kernels, psf_sigma=psf_sigma, state=state,
                                      keep_noisy_frames=keep_noisy_frames, on_psf_sigma=on_psf_sigma):
        sr[strip.row0:strip.row0 + len(strip.sr)] = strip.sr
        scale[strip.row0:strip.row0 + len(strip.scale)] = strip.scale
    return sr, scale


def super_resolve_strips(stack: AnyStack, model: torch.nn.Module | Runner, device: torch.device | None = None,
                         tile_size: int = DEFAULT_TILE_SIZE, overlap: int = DEFAULT_OVERLAP,
                         progress: ProgressCallback | None = None, *, precision: str = "fp32",
                         batch_size: int | None = None, ttf_steps: int | FineTuneSettings = 0,
                         on_warning: Callable[[str], None] | None = None,
                         on_kernels: KernelsCallback | None = None,
                         registration: tuple[np.ndarray, int] | None = None,
                         psf_sigma: float | None = None, state: int | None = None,
                         keep_noisy_frames: bool = False,
                         on_frames_used: FramesCallback | None = None,
                         on_psf_sigma: WidthCallback | None = None) -> Iterator[Strip]:
    """Super-resolve `stack` x3 one row of tiles at a time, yielding each finished strip of SR rows.

    Input and output are both streamed: the shifts are estimated on the registration window,
    the normalisation accumulated over blocks of registered rows, then each row of tiles reads
    (in a background thread, while the previous row runs) only the input rows it needs, moved
    by the whole-pixel shifts. So, at a fixed tile size, memory does not grow with the raster's
    height, whether `stack` is a `LazyStack` or an in-memory `Stack` (same results). Tiles of one
    row run `batch_size` at a time (default: 1 on the CPU, 4 on CUDA). Out of memory, the batch
    is halved, then the tile size (each tile is then run as sub-tiles, blended); `on_warning`
    hears about it. With `ttf_steps`, a copy of the torch model is first fine-tuned on
    windows spread over the scene (``finetune.finetune_on_scene``; half of the progress), and
    `on_kernels` hears the frames' estimated kernels. `registration` (shifts (T, 2), reference
    frame: ``streamed.stack_registration``), when given, is used instead of estimating it (the
    bands of one multi-band run share one registration). `psf_sigma`, `state`, `keep_noisy_frames`:
    as in `super_resolve`; `on_frames_used` hears the paths of the frames used, and `on_psf_sigma` the
    back-projection's PSF width (stated, chosen per scene or the default), before the first strip.
    """
    runner = (TorchRunner(model, device if device is not None else torch.device("cpu"), precision)
              if isinstance(model, torch.nn.Module) else model)
    with read_cache_limit(stack.cache_bytes()):  # held while the consumer writes the strips too
        settings = ttf_steps if isinstance(ttf_steps, FineTuneSettings) else FineTuneSettings(int(ttf_steps))
        yield from _strips(stack, runner, tile_size, overlap, progress, batch_size, settings, on_warning, on_kernels,
                           registration, psf_sigma, state, keep_noisy_frames, on_frames_used, on_psf_sigma)


def _strips(stack: AnyStack, runner: Runner, tile_size: int, overlap: int, progress: ProgressCallback | None,
            batch_size: int | None, ttf: FineTuneSettings, on_warning: Callable[[str], None] | None,
            on_kernels: KernelsCallback | None, registration: tuple[np.ndarray, int] | None,
            psf_sigma: float | None, state: int | None, keep_noisy_frames: bool,
            on_frames_used: FramesCallback | None, on_psf_sigma: WidthCallback | None) -> Iterator[Strip]:
    """`super_resolve_strips` once the runner is known (see there)."""
    _, height, width = stack.shape
    say = (lambda message: progress(0.0, message)) if progress else None  # before the network: 0 done
    rows, phases, norm, tiles = prepare_scene(stack, tile_size, overlap, registration, say)
    noisy, paths = noisy_frames(norm, state), stack.paths
    left_out = [] if keep_noisy_frames else [index for index, times in noisy if times >= LEAVE_OUT_RATIO]
    if left_out:
        stack, registration, state = leave_out_noisy(stack, registration, state, left_out)
        rows, phases, norm, tiles = prepare_scene(stack, tile_size, overlap, registration, say)
    tile_rows = [[t for t in tiles if t.y0 == y0] for y0 in sorted({t.y0 for t in tiles})]
    if on_warning:
        for message in noisy_frame_notes(noisy, paths, left_out, keep_noisy_frames):
            on_warning(message)
    if on_frames_used:
        on_frames_used([str(path) for path in stack.paths])
    noise, frame_noise = norm.noise / norm.spread, np.asarray(norm.frame_noise) / norm.spread  # network units
    stated_sigma, choose_width = psf_sigma, psf_sigma is None and SCENE_PSF_WIDTH
    # the width choice and fine-tuning read the same windows, and may both ask their held-out misfit
    windows = _finetuning_windows(rows, norm) if choose_width or ttf.steps > 0 else []
    misfits = cache(partial(held_out_misfits, windows, phases, WIDTHS))
    if choose_width:
        if say:
            say("choosing the back-projection's PSF width")
        # out of memory, the windows are run smaller as tiles are, unsaid: the tiles, larger, will say it
        # before any fine-tuning: chosen again from the tuned network it cost 0.25 / 0.75 dB on two validation
        # scenes (docs/evaluation/adaptation/ttf_kernel_start.log)
        window_batches = _TileBatches(runner, 1, overlap, lambda message: None)
        psf_sigma, _ = scene_psf_sigma(window_batches.run, windows, phases, noise, frame_noise, misfits)
        if say and psf_sigma != PSF_SIGMA:
            say(f"frames {'sharper' if psf_sigma < PSF_SIGMA else 'blurrier'} than the default PSF of {PSF_SIGMA:g} "
                f"output pixels: the back-projection uses {psf_sigma:g}")
    if on_psf_sigma:
        on_psf_sigma(PSF_SIGMA if psf_sigma is None else psf_sigma)
    tuned = (_finetuned(runner, rows, windows, phases, ttf, progress, on_warning, on_kernels, stated_sigma, misfits)
             if ttf.steps > 0 else None)
    refinements = [partial(gated_then_consistent, noise=noise, context=EDGE_CONTEXT, frame_noise=frame_noise,
                           psf_sigma=psf_sigma)]
    if state is not None:
        look = frame_look(rows.blocks(tiles[0].height), state, stack.shape)
        refinements.append(partial(toward_frame, index=state, noise=look.noise / norm.spread, context=EDGE_CONTEXT,
                                   offset=look.offset / norm.spread, psf_sigma=psf_sigma))
    runner = RefinedRunner(tuned or runner, refinements)
    share = TTF_PROGRESS_SHARE if tuned else 0.0
    batches = _TileBatches(runner, batch_size or runner.default_batch, overlap, on_warning)
    blender = StripBlender(width * SCALE, channels=2, scale=SCALE, ramp=overlap // 2)
    done = 0
    for row_index, row_input in enumerate(_prefetched(rows, tile_rows)):
        row = tile_rows[row_index]
        start = 0
        while start < len(row):  # the batch size may shrink on out-of-memory
            batch = row[start:start + batches.batch_size]
            frames, masks = _tile_inputs(row_input, batch, norm)
            for tile, output in zip(batch, batches.run(frames, masks, np.stack([phases] * len(batch)))):
                check_finite(output, tile)
                blender.add(tile, output)
            start += len(batch)
            done += len(batch)
            if progress:
                progress(share + (1.0 - share) * done / len(tiles), f"tile {done}/{len(tiles)}")
        until = tile_rows[row_index + 1][0].y0 if row_index + 1 < len(tile_rows) else height
        yield _finished_strip(blender, until, row_input, norm)


def prepare_scene(stack: AnyStack, tile_size: int = DEFAULT_TILE_SIZE, overlap: int = DEFAULT_OVERLAP,
                  registration: tuple[np.ndarray, int] | None = None, say: Say | None = None
                  ) -> tuple[RegisteredRows, np.ndarray, Normalisation, list[Tile]]:
    """What a run computes before the network: the registered rows of `stack` (shifts and
    radiometry fitted; `registration` when given, else ``streamed.stack_registration``), the
    frames' sub-pixel phases, the scene's normalisation (``Normalisation.of_registered``) and
    the tiles. `say` hears each step (the last two read the whole scene: minutes on a
    Sentinel-2 tile)."""
    _, height, width = stack.shape
    if registration is None and say is not None:
        say("registering the frames")
    shifts, reference = stack_registration(stack) if registration is None else registration
    rows = RegisteredRows(stack, shifts)
    tiles = make_tiles(height, width, tile_size, overlap)
    rows.radiometry = scene_radiometry(rows, reference, tiles[0].height,  # reads as high as a tile row
                                       say=staged(say, "fitting each frame's radiometry"))
    phases = subpixel_phase(shifts)
    blocks = rows.blocks(tiles[0].height, staged(say, "measuring the scene's level and noise"))
    return rows, phases, Normalisation.of_registered(blocks, phases), tiles


def noisy_frames(norm: Normalisation, state: int | None = None) -> list[tuple[int, float]]:
    """(index, times the median frame's noise) of the frames far noisier than the others
    (``Normalisation.noisy_frames``), the `state` frame aside: from LEAVE_OUT_RATIO times on, a
    run leaves them out."""
    return [(index, times) for index, times in norm.noisy_frames() if index != state]


def noisy_in_every_band(stack: AnyStack, tile_size: int = DEFAULT_TILE_SIZE, overlap: int = DEFAULT_OVERLAP,
                        state: int | None = None, say: Say | None = None) -> list[tuple[int, float]]:
    """(index, the fewest times the median frame's noise over the bands) of the frames that a run
    of `stack` leaves out of every band (``noisy_frames`` from LEAVE_OUT_RATIO on), measured as
    the run measures them (one registration for every band of a multi-band stack; `say` hears
    the steps, as ``prepare_scene``'s)."""
    count = getattr(stack, "band_count", 1)  # an in-memory `Stack` has one band
    registration = stack_registration(stack) if count > 1 else None
    found: dict[int, float] | None = None
    for band in [stack.band(index) for index in range(count)] if count > 1 else [stack]:
        norm = prepare_scene(band, tile_size, overlap, registration, say)[2]
        times = {index: t for index, t in noisy_frames(norm, state) if t >= LEAVE_OUT_RATIO}
        found = times if found is None else {index: min(t, found[index]) for index, t in times.items() if index in found}
        if not found:
            return []
    return sorted(found.items())


def leave_out_noisy(stack: AnyStack, registration: tuple[np.ndarray, int] | None, state: int | None,
                    noisy: list[int]) -> tuple[AnyStack, tuple[np.ndarray, int] | None, int | None]:
    """`stack` without the frames `noisy`, with the given registration (None: estimated again on
    what is left, as it is when the left-out frame was its reference) and the `state` frame's
    index among the frames kept."""
    keep = np.setdiff1d(np.arange(stack.shape[0]), noisy)
    if registration is not None:
        shifts, reference = registration
        registration = (shifts[keep], int(np.searchsorted(keep, reference))) if reference in keep else None
    return stack.subset(keep), registration, None if state is None else int(np.searchsorted(keep, state))


def noisy_frame_notes(noisy: list[tuple[int, float]], paths: list[str], left_out: list[int],
                      kept_as_asked: bool) -> list[str]:
    """One line per frame far noisier than the others (``Normalisation.noisy_frames``: (index into
    `paths`, times the median frame's noise)), naming it and saying whether it was left out."""
    def note(index: int, times: float) -> str:
        told = (f"{os.path.basename(paths[index])} is {times:.1f} times as noisy as the median frame (haze, a dark "
                "date, another sensor?): ")
        if index in left_out:
            return told + "left out of this run, where it would lower the SR's quality (--keep-noisy-frames keeps it)"
        kept = ("kept as asked" if kept_as_asked and times >= LEAVE_OUT_RATIO
                else f"kept (frames from {LEAVE_OUT_RATIO:g} times on are left out)")
        return told + kept + ": flat areas fall back to a mean that weighs it down, elsewhere it counts as any frame"
    return [note(index, times) for index, times in noisy]


def finetuning_inputs(stack: AnyStack, tile_size: int = DEFAULT_TILE_SIZE, overlap: int = DEFAULT_OVERLAP
                      ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """The normalised windows (frames, masks) and the phases that fine-tuning `stack` in
    `super_resolve` uses (for studies of the fine-tuning itself)."""
    rows, phases, norm, _ = prepare_scene(stack, tile_size, overlap)
    return _finetuning_windows(rows, norm), phases


def _finetuning_windows(rows: RegisteredRows, norm: Normalisation) -> list[tuple[np.ndarray, np.ndarray]]:
    """Normalised frames and masks of the windows spread over the scene (``finetune.window_origins``)."""
    _, height, width = rows.stack.shape
    windows = []
    for row0, col0 in window_origins(height, width):
        block = rows.read(row0, min(row0 + TTF_WINDOW, height))
        cols = slice(col0, min(col0 + TTF_WINDOW, width))
        frames, masks = block.frames[:, :, cols], block.masks[:, :, cols]
        windows.append((norm.apply(frames, masks), masks))
    return windows


def check_finite(output: np.ndarray, tile: Tile) -> None:
    """A one-line MisrError when the network's output for `tile` holds NaN or Inf (its inputs are
    finite: damaged or hostile weights, or a backend failure), rather than an output of NaNs."""
    if not np.isfinite(output).all():
        raise MisrError(f"the network's output is not finite (NaN or Inf) on the tile at LR rows "
                        f"{tile.y0}-{tile.y0 + tile.height}, columns {tile.x0}-{tile.x0 + tile.width}: "
                        "damaged weights? no output written")


def _finetuned(runner: Runner, rows: RegisteredRows, windows: list[tuple[np.ndarray, np.ndarray]],
               phases: np.ndarray, settings: FineTuneSettings, progress: ProgressCallback | None,
               on_warning: Callable[[str], None] | None, on_kernels: KernelsCallback | None,
               stated_sigma: float | None, misfits: Callable[[], dict[float, float]]) -> TorchRunner | None:
    """A runner of a copy of the runner's network fine-tuned on the normalised `windows` spread over
    the registered stack (``finetune.window_origins``; the given runner is left as it is), or None,
    with a warning, when there are too few frames to leave one out. The frames' kernels start at
    the sensor's stated PSF width, else at ``psf_width.kernel_start_width`` of the windows' held-out
    `misfits`: out of the training ranges fine-tuning then gained +0.06 dB instead of losing 0.13 on
    validation scenes (docs/evaluation/adaptation/ttf_kernel_start.log)."""
    if not isinstance(runner, TorchRunner):
        raise MisrError("test-time fine-tuning needs the torch backend: ONNX Runtime runs fixed weights")
    count = rows.stack.shape[0]
    if count < MIN_FRAMES:
        if on_warning:
            on_warning(f"test-time fine-tuning skipped: it needs at least {MIN_FRAMES} frames, got {count}")
        return None
    steps = settings.steps

    started = time.perf_counter()

    def on_step(step: int, loss: float) -> None:
        if step == 1 and on_warning and steps > 1:
            seconds = (time.perf_counter() - started) * steps
            if seconds > TTF_WARN_SECONDS:
                on_warning(f"test-time fine-tuning: {steps} steps will take about {seconds / 60:.0f} minutes "
                           f"here ({seconds / steps:.1f} s a step); interrupt to stop, nothing is written")
        if progress:
            progress(TTF_PROGRESS_SHARE * step / steps, f"test-time fine-tuning {step}/{steps}, loss {loss:.4f}")
    start = stated_sigma if stated_sigma is not None else kernel_start_width(misfits())
    tuned = finetune_on_scene(runner.model, windows, phases, settings, runner.device, on_step=on_step,
                              kernel_sigma=start)
    if on_kernels:
        on_kernels(kernel_report(tuned, [str(p) for p in rows.stack.paths], phases))
    return TorchRunner(tuned.model, runner.device, runner.precision)


def _prefetched(rows: RegisteredRows, tile_rows: list[list[Tile]]) -> Iterator[TileRowInput]:
    """The input of every row of tiles, in order; the next one is read in a background thread
    while the caller works on the current one (GDAL reads overlap the network)."""
    def read(row: list[Tile]) -> TileRowInput:
        return rows.read(row[0].y0, row[0].y0 + row[0].height)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="misr-read") as pool:
        pending: Future = pool.submit(read, tile_rows[0])
        for index in range(len(tile_rows)):
            current = pending.result()
            if index + 1 < len(tile_rows):
                pending = pool.submit(read, tile_rows[index + 1])
            yield current


def _tile_inputs(row_input: TileRowInput, batch: list[Tile], norm: Normalisation) -> tuple[np.ndarray, np.ndarray]:
    """Normalised frames and float masks (B, T, h, w) of a batch of tiles of one row."""
    windows = [(slice(None), slice(0, t.height), slice(t.x0, t.x0 + t.width)) for t in batch]
    frames = np.stack([norm.apply(row_input.frames[w], row_input.masks[w]) for w in windows])
    masks = np.stack([row_input.masks[w] for w in windows]).astype(np.float32)
    return frames, masks


def _finished_strip(blender: StripBlender, until: int, row_input: TileRowInput, norm: Normalisation) -> Strip:
    """The blended SR rows up to LR row `until`, in input units, NaN where no frame was clear."""
    mean, log_scale = blender.take(until * SCALE)
    row0 = blender.row0 - len(mean)
    no_data = row_input.no_data[row0 // SCALE - row_input.row0:until - row_input.row0]
    invalid = np.repeat(np.repeat(no_data, SCALE, axis=0), SCALE, axis=1)
    sr = (mean * norm.spread + norm.centre).astype(np.float32)
    scale = (np.exp(np.clip(log_scale, -LOG_SCALE_LIMIT, MAX_LOG_SCALE)) * norm.spread).astype(np.float32)
    sr[invalid] = np.nan
    scale[invalid] = np.nan
    return Strip(row0, sr, scale)


def _run_with_context(runner: Runner, frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """Run tiles mirrored by EDGE_CONTEXT LR pixels on every side and crop the result.

    The network is trained with a loss that ignores the outer 3 HR pixels, so its outputs there
    are unconstrained; mirrored context moves them outside the kept area.
    """
    pad = EDGE_CONTEXT
    mode = "reflect" if min(frames.shape[-2:]) > pad else "edge"
    widths = ((0, 0), (0, 0), (pad, pad), (pad, pad))
    output = runner(np.ascontiguousarray(np.pad(frames, widths, mode=mode)),
                    np.ascontiguousarray(np.pad(masks, widths, mode=mode)), phases)
    crop = pad * SCALE
    return output[..., crop:output.shape[-2] - crop, crop:output.shape[-1] - crop]


class _TileBatches:
    """Runs batches of equal tiles; out of memory, halves the batch, then the tile size."""

    def __init__(self, runner: Runner, batch_size: int, overlap: int,
                 on_warning: Callable[[str], None] | None):
        self.runner, self.batch_size, self.overlap = runner, max(1, batch_size), overlap
        self.sub_tile: int | None = None  # once a tile size ran out of memory: the size that fits
        self.warn = on_warning or (lambda message: warnings.warn(message, RuntimeWarning, stacklevel=3))

    def run(self, frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> np.ndarray:
        """(B, T, h, w) normalised frames and masks, (B, T, 2) phases -> (B, 2, 3h, 3w) mean and log-scale."""
        if len(frames) > self.batch_size:
            return np.concatenate([self.run(*(a[i:i + self.batch_size] for a in (frames, masks, phases)))
                                   for i in range(0, len(frames), self.batch_size)])
        size = max(frames.shape[-2:])
        if self.sub_tile is not None and size > self.sub_tile:
            return np.stack([self._run_sub_tiled(*tile) for tile in zip(frames, masks, phases)])
        try:
            return _run_with_context(self.runner, frames, masks, phases)
        except TileOutOfMemory as exc:
            if len(frames) > 1:
                self.batch_size = len(frames) // 2
                self.warn(f"out of memory with {len(frames)} tiles per pass ({exc}): "
                          f"retrying with {self.batch_size}")
                return self.run(frames, masks, phases)
            if size // 2 < MIN_TILE_SIZE:
                raise MisrError(f"out of memory even with {size}-pixel tiles, one at a time ({exc}); "
                                "use fewer --max-frames or the CPU") from None
            self.sub_tile = size // 2
            self.warn(f"out of memory with {size}-pixel tiles ({exc}): retrying with {self.sub_tile}-pixel tiles")
            return self.run(frames, masks, phases)

    def _run_sub_tiled(self, frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> np.ndarray:
        """One tile (T, h, w) run as blended sub-tiles of `sub_tile` pixels: (2, 3h, 3w)."""
        _, height, width = frames.shape
        blender = StripBlender(width * SCALE, channels=2, scale=SCALE, ramp=self.overlap // 2)
        tiles = make_tiles(height, width, self.sub_tile, self.overlap)
        outputs = self.run(np.stack([frames[(slice(None), *t.lr_slice())] for t in tiles]),
                           np.stack([masks[(slice(None), *t.lr_slice())] for t in tiles]),
                           np.stack([phases] * len(tiles)))
        for tile, output in zip(tiles, outputs):
            blender.add(tile, output)
        return blender.take(height * SCALE)
