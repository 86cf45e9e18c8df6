"""Tiled super-resolution of a whole stack: normalise, run the network tile by tile, blend."""

from __future__ import annotations

import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Union

import numpy as np
import torch

from . import SCALE
from .backends import Runner, TileOutOfMemory, TorchRunner
from .errors import MisrError
from .finetune import MIN_FRAMES, TTF_WINDOW, finetune_on_scene
from .preprocess import (central_window, estimate_shifts, move_rows, registration_window, subpixel_phase,
                         whole_pixel_moves)
from .raster_io import (DEFAULT_MAX_FRAMES, LazyStack, Stack, gdal_cache_limit, row_blocks,  # noqa: F401
                        select_frames)
from .tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, StripBlender, Tile, make_tiles

TTF_PROGRESS_SHARE = 0.5  # of the progress bar, for test-time fine-tuning when it runs
AnyStack = Union[Stack, LazyStack]

ProgressCallback = Callable[[float, str], None]
EDGE_CONTEXT = 2  # LR pixels of mirrored context around every tile
MIN_TILE_SIZE = 16


@dataclass(frozen=True)
class Normalisation:
    """Scene-level affine normalisation: network units = (value - centre) / spread."""

    centre: float
    spread: float

    @classmethod
    def of(cls, frames: np.ndarray, masks: np.ndarray) -> "Normalisation":
        """Mean and standard deviation of all clear pixels (spread never zero).

        Accumulated frame by frame in float64: no copy of the whole stack's clear pixels.
        """
        return cls.of_blocks(zip(frames, masks))

    @classmethod
    def of_blocks(cls, blocks: Iterable[tuple[np.ndarray, np.ndarray]]) -> "Normalisation":
        """`of` over (frames, masks) blocks that together make the stack, one block at a time.

        Each block's count, mean and sum of squared deviations (float64) are merged into the
        running ones (Chan et al.), so the result is that of all the pixels at once.
        """
        count, centre, squares = 0, 0.0, 0.0
        for frames, masks in blocks:
            values = np.asarray(frames)[np.asarray(masks, bool)].astype(np.float64)
            if values.size == 0:
                continue
            mean = float(values.mean())
            delta, total = mean - centre, count + values.size
            squares += float(np.square(values - mean).sum()) + delta * delta * count * values.size / total
            centre += delta * values.size / total
            count = total
        if count == 0:
            return cls(0.0, 1.0)
        spread = (squares / count) ** 0.5
        return cls(centre, spread if spread > 1e-6 * max(1.0, abs(centre)) else max(1.0, abs(centre)) * 1e-3)

    def apply(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Normalised frames with cloudy pixels set to 0 (the scene mean)."""
        return np.where(masks, (frames - self.centre) / self.spread, 0.0).astype(np.float32)


def resolve_device(name: str) -> torch.device:
    """'auto' -> the first CUDA GPU if torch sees one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MisrError(f"--device {name}: torch {torch.__version__} sees no CUDA GPU on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise MisrError(f"--device {name}: not a device name (use auto, cpu or cuda)") from None


@dataclass
class Strip:
    """Finished SR rows `row0` to `row0 + len(sr)` (full width), in input units, NaN where no frame is clear."""

    row0: int
    sr: np.ndarray
    scale: np.ndarray


def super_resolve(stack: AnyStack, model: torch.nn.Module | Runner, device: torch.device | None = None,
                  tile_size: int = DEFAULT_TILE_SIZE, overlap: int = DEFAULT_OVERLAP,
                  progress: ProgressCallback | None = None, *, precision: str = "fp32",
                  batch_size: int | None = None, ttf_steps: int = 0,
                  on_warning: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Super-resolve `stack` x3. Returns (SR, Laplace scale) in input units, NaN where no frame is clear.

    `model` is a torch module (run on `device`, with `precision`) or a runner from `backends`;
    `ttf_steps` > 0 fine-tunes (a copy of) a torch model on the scene first (``finetune``).
    """
    _, height, width = stack.shape
    sr = np.empty((height * SCALE, width * SCALE), np.float32)
    scale = np.empty_like(sr)
    for strip in super_resolve_strips(stack, model, device, tile_size, overlap, progress, precision=precision,
                                      batch_size=batch_size, ttf_steps=ttf_steps, on_warning=on_warning):
        sr[strip.row0:strip.row0 + len(strip.sr)] = strip.sr
        scale[strip.row0:strip.row0 + len(strip.scale)] = strip.scale
    return sr, scale


@dataclass
class TileRowInput:
    """What one row of tiles needs: the registered frames and clear masks of its LR rows
    row0:row0 + len(no_data) (full width), and where no frame was clear before registration."""

    row0: int
    frames: np.ndarray
    masks: np.ndarray
    no_data: np.ndarray


class RegisteredRows:
    """Reads registered rows of a stack window by window: each frame moved by its whole-pixel
    shift (`preprocess.move_rows`), reading only the input rows they come from."""

    def __init__(self, stack: AnyStack, shifts: np.ndarray):
        self.stack, self.moves = stack, whole_pixel_moves(shifts)
        self.reach = int(np.abs(self.moves[:, 0]).max(initial=0))

    def read(self, row0: int, row1: int) -> TileRowInput:
        """Registered rows row0:row1, and the no-data map (no frame clear before registration)."""
        height = self.stack.shape[1]
        top, bottom = max(0, row0 - self.reach), min(height, row1 + self.reach)
        frames, masks = self.stack.read_rows(top, bottom)
        moved, moved_masks = move_rows(frames, masks, self.moves, top, (row0, row1), height)
        return TileRowInput(row0, moved, moved_masks, ~masks[:, row0 - top:row1 - top].any(axis=0))

    def blocks(self, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(frames, masks) of the registered stack in blocks of `rows` rows, top to bottom."""
        for row0, row1 in row_blocks(self.stack.shape[1], rows):
            block = self.read(row0, row1)
            yield block.frames, block.masks


def stack_shifts(stack: AnyStack) -> np.ndarray:
    """Shifts (T, 2) of the stack's frames, estimated on its registration window only."""
    count, height, width = stack.shape
    if count <= 1:
        return np.zeros((count, 2))
    rows, cols = registration_window((height, width))
    frames, masks = stack.read_rows(rows.start, rows.stop, cols.start, cols.stop)
    return estimate_shifts(frames, masks)


def super_resolve_strips(stack: AnyStack, model: torch.nn.Module | Runner, device: torch.device | None = None,
                         tile_size: int = DEFAULT_TILE_SIZE, overlap: int = DEFAULT_OVERLAP,
                         progress: ProgressCallback | None = None, *, precision: str = "fp32",
                         batch_size: int | None = None, ttf_steps: int = 0,
                         on_warning: Callable[[str], None] | None = None) -> Iterator[Strip]:
    """Super-resolve `stack` x3 one row of tiles at a time, yielding each finished strip of SR rows.

    Input and output are both streamed: the shifts are estimated on the registration window,
    the normalisation accumulated over blocks of registered rows, then each row of tiles reads
    (in a background thread, while the previous row runs) only the input rows it needs, moved
    by the whole-pixel shifts. So, at a fixed tile size, memory does not grow with the raster's
    height, whether `stack` is a `LazyStack` or an in-memory `Stack` (same results). Tiles of one
    row run `batch_size` at a time (default: 1 on the CPU, 4 on CUDA). Out of memory, the batch
    is halved, then the tile size (each tile is then run as sub-tiles, blended); `on_warning`
    hears about it. With `ttf_steps`, a copy of the torch model is first fine-tuned on the
    scene's central window (``finetune.finetune_on_scene``; half of the progress).
    """
    runner = (TorchRunner(model, device if device is not None else torch.device("cpu"), precision)
              if isinstance(model, torch.nn.Module) else model)
    with gdal_cache_limit(stack.cache_bytes()):  # held while the consumer writes the strips too
        yield from _strips(stack, runner, tile_size, overlap, progress, batch_size, ttf_steps, on_warning)


def _strips(stack: AnyStack, runner: Runner, tile_size: int, overlap: int, progress: ProgressCallback | None,
            batch_size: int | None, ttf_steps: int, on_warning: Callable[[str], None] | None) -> Iterator[Strip]:
    """`super_resolve_strips` once the runner is known (see there)."""
    _, height, width = stack.shape
    shifts = stack_shifts(stack)
    phases = subpixel_phase(shifts)
    rows = RegisteredRows(stack, shifts)
    tiles = make_tiles(height, width, tile_size, overlap)
    tile_rows = [[t for t in tiles if t.y0 == y0] for y0 in sorted({t.y0 for t in tiles})]
    norm = Normalisation.of_blocks(rows.blocks(tile_rows[0][0].height))
    tuned = _finetuned(runner, rows, norm, phases, ttf_steps, progress, on_warning) if ttf_steps > 0 else None
    runner = tuned or runner
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
                blender.add(tile, output)
            start += len(batch)
            done += len(batch)
            if progress:
                progress(share + (1.0 - share) * done / len(tiles), f"tile {done}/{len(tiles)}")
        until = tile_rows[row_index + 1][0].y0 if row_index + 1 < len(tile_rows) else height
        yield _finished_strip(blender, until, row_input, norm)


def _finetuned(runner: Runner, rows: RegisteredRows, norm: Normalisation, phases: np.ndarray, steps: int,
               progress: ProgressCallback | None, on_warning: Callable[[str], None] | None) -> TorchRunner | None:
    """A runner of a copy of the runner's network fine-tuned on the central window of the
    registered stack (the given runner is left as it is), or None, with a warning, when there
    are too few frames to leave one out."""
    if not isinstance(runner, TorchRunner):
        raise MisrError("test-time fine-tuning needs the torch backend: ONNX Runtime runs fixed weights")
    count, height, width = rows.stack.shape
    if count < MIN_FRAMES:
        if on_warning:
            on_warning(f"test-time fine-tuning skipped: it needs at least {MIN_FRAMES} frames, got {count}")
        return None
    window_rows, window_cols = central_window((height, width), TTF_WINDOW)
    window = rows.read(window_rows.start, window_rows.stop)
    frames, masks = window.frames[:, :, window_cols], window.masks[:, :, window_cols]

    def on_step(step: int, loss: float) -> None:
        if progress:
            progress(TTF_PROGRESS_SHARE * step / steps, f"test-time fine-tuning {step}/{steps}, loss {loss:.4f}")
    tuned = finetune_on_scene(runner.model, norm.apply(frames, masks), masks, phases, steps, runner.device,
                              on_step=on_step)
    return TorchRunner(tuned, runner.device, runner.precision)


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
    scale = (np.exp(log_scale) * norm.spread).astype(np.float32)
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
