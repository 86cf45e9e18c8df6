"""Tiled super-resolution of a whole stack: normalise, run the network tile by tile, blend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import SCALE
from .errors import MisrError
from .preprocess import register
from .raster_io import DEFAULT_MAX_FRAMES, Stack, select_frames  # noqa: F401 (torch-free, re-exported)
from .tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, Blender, make_tiles

ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class Normalisation:
    """Scene-level affine normalisation: network units = (value - centre) / spread."""

    centre: float
    spread: float

    @classmethod
    def of(cls, frames: np.ndarray, masks: np.ndarray) -> "Normalisation":
        """Mean and standard deviation of all clear pixels (spread never zero)."""
        clear = frames[masks]
        if clear.size == 0:
            return cls(0.0, 1.0)
        centre = float(clear.mean())
        spread = float(clear.std())
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


@torch.inference_mode()
def super_resolve(stack: Stack, model: torch.nn.Module, device: torch.device,
                  tile_size: int = DEFAULT_TILE_SIZE, overlap: int = DEFAULT_OVERLAP,
                  progress: ProgressCallback | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Super-resolve `stack` x3. Returns (SR, Laplace scale) in input units, NaN where no frame is clear."""
    registered, clear, _ = register(stack.frames, stack.masks)
    norm = Normalisation.of(registered, clear)
    frames = norm.apply(registered, clear)
    masks = clear.astype(np.float32)
    _, height, width = frames.shape
    tiles = make_tiles(height, width, tile_size, overlap)
    blender = Blender((height * SCALE, width * SCALE), channels=2, scale=SCALE, ramp=overlap // 2)
    for index, tile in enumerate(tiles):
        rows, cols = tile.lr_slice()
        x = torch.from_numpy(np.ascontiguousarray(frames[:, rows, cols]))[None].to(device)
        m = torch.from_numpy(np.ascontiguousarray(masks[:, rows, cols]))[None].to(device)
        mean, log_scale = model(x, m)
        blender.add(tile, torch.cat([mean, log_scale], dim=1)[0].float().cpu().numpy())
        if progress:
            progress((index + 1) / len(tiles), f"tile {index + 1}/{len(tiles)}")
    mean, log_scale = blender.result()
    sr = mean * norm.spread + norm.centre
    scale = np.exp(log_scale) * norm.spread
    no_data = np.repeat(np.repeat(~clear.any(axis=0), SCALE, axis=0), SCALE, axis=1)
    sr[no_data] = np.nan
    scale[no_data] = np.nan
    return sr.astype(np.float32), scale.astype(np.float32)
