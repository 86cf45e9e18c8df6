"""Checks a run's inputs before the engine starts: every problem as one readable line.

The engine checks the same things (and is the authority); checking here lets the dialog show
the problems next to the inputs and keep Run disabled instead of failing after a start-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .params import ALIGN_LABEL, MIN_TILE_SIZE, FrameInput, RasterInfo, RunParameters

RELATIVE_TOLERANCE = 1e-6
"""Coordinates may differ by this fraction of a pixel (the engine uses the same)."""


def grid_mismatch(reference: RasterInfo, other: RasterInfo) -> List[str]:
    """How `other` differs from `reference`'s grid: CRS, size, pixel size, extent."""
    problems = []
    if reference.crs != other.crs:
        problems.append(f"CRS {other.crs or 'unknown'} differs from {reference.crs or 'unknown'}")
    if (reference.width, reference.height) != (other.width, other.height):
        problems.append(f"size {other.width}x{other.height} differs from "
                        f"{reference.width}x{reference.height}")
    tolerance = RELATIVE_TOLERANCE * max(reference.pixel_size)
    if any(abs(a - b) > tolerance for a, b in zip(reference.pixel_size, other.pixel_size)):
        problems.append("pixel size {} differs from {}".format(
            _fmt_pair(other.pixel_size), _fmt_pair(reference.pixel_size)))
    if any(abs(a - b) > tolerance for a, b in zip(reference.extent, other.extent)):
        problems.append("extent {} differs from {}".format(
            _fmt_extent(other.extent), _fmt_extent(reference.extent)))
    return problems


@dataclass(frozen=True)
class OffGrid:
    """A frame or mask that is not on the grid the engine compares it with."""

    role: str
    """``Frame`` or ``Mask``."""
    raster: RasterInfo
    reference: str
    """The raster whose grid it should be on, in words (``frame a``, ``its frame b``)."""
    mismatches: Tuple[str, ...]
    alignable: bool
    """Whether the engine's ``--align`` can resample it onto the first frame's grid (not when
    only one of it and the first frame has a CRS)."""

    def _head(self) -> str:
        return f"{self.role} {self.raster.name}: {'; '.join(self.mismatches)} ({self.reference})"

    def problem_line(self) -> str:
        """The blocking problem: what differs, and what to do about it."""
        if not self.alignable:
            return (f"{self._head()}; it cannot be resampled onto the first frame's grid "
                    f"because only one of the two has a CRS.")
        return f"{self._head()}. Tick \"{ALIGN_LABEL}\" to resample it."

    def note_line(self) -> str:
        """The informational note when the engine will resample it (``--align``)."""
        method = "bilinear" if self.role == "Frame" else "nearest neighbour"
        return f"{self._head()}: will be resampled onto the first frame's grid ({method})."


def off_grid(frames: Sequence[FrameInput], align: bool = False) -> List[OffGrid]:
    """Frames off the first frame's grid, and masks off their frame's grid (with `align`: off
    the first frame's grid, which is where the engine resamples everything)."""
    if not frames:
        return []
    reference = frames[0].frame
    first = f"frame {reference.name}"
    checks = [("Frame", item.frame, reference, first) for item in frames[1:]]
    checks += [("Mask", item.mask, reference, first) if align else
               ("Mask", item.mask, item.frame, f"its frame {item.frame.name}")
               for item in frames if item.mask is not None]
    found = []
    for role, raster, target, label in checks:
        mismatches = grid_mismatch(target, raster)
        if mismatches:
            found.append(OffGrid(role, raster, label, tuple(mismatches),
                                 alignable=bool(reference.crs) == bool(raster.crs)))
    return found


def alignment_notes(params: RunParameters) -> List[str]:
    """With ``params.align``: one line per frame or mask the engine will resample (not a problem)."""
    if not params.align:
        return []
    return [finding.note_line() for finding in off_grid(params.frames, align=True) if finding.alignable]


def validate_inputs(frames: Sequence[FrameInput], band: int = 1, align: bool = False) -> List[str]:
    """Problems with the frames and masks, [] when the engine can read them as one stack.

    Grid mismatches are problems unless `align` is set and the engine can resample the raster
    (see :func:`alignment_notes`); the problem line then says which option fixes it.
    """
    problems: List[str] = []
    if len(frames) < 2:
        problems.append(f"Choose at least 2 frames (multi-image super-resolution); "
                        f"{len(frames)} chosen.")
    if not frames:
        return problems
    for item in frames:
        for role, info in (("frame", item.frame), ("mask", item.mask)):
            if info is not None:
                problem = _file_problem(info)
                if problem:
                    problems.append(f"{role.capitalize()} {info.name}: {problem}.")
    paths = [item.frame.path for item in frames]
    for path in sorted({p for p in paths if p and paths.count(p) > 1}):
        problems.append(f"Frame file {os.path.basename(path)} is chosen more than once.")
    with_mask = [item for item in frames if item.mask is not None]
    if with_mask and len(with_mask) != len(frames):
        missing = ", ".join(item.frame.name for item in frames if item.mask is None)
        problems.append(f"Choose a mask for every frame or for none (no mask: {missing}).")
    problems += [finding.problem_line() for finding in off_grid(frames, align)
                 if not (align and finding.alignable)]
    if band < 1:
        problems.append(f"Band {band}: bands are numbered from 1.")
    else:
        for item in frames:
            if band > item.frame.band_count:
                problems.append(f"Frame {item.frame.name} has {item.frame.band_count} band(s); "
                                f"band {band} does not exist.")
    return problems


def validate_parameters(params: RunParameters) -> List[str]:
    """All problems of a run: inputs, outputs, tile size."""
    problems = validate_inputs(params.frames, params.band, params.align)
    if params.tile_size and params.tile_size < MIN_TILE_SIZE:
        problems.append(f"Tile size {params.tile_size}: must be at least {MIN_TILE_SIZE} pixels "
                        f"(or 0 for the engine's default).")
    if params.ttf_enabled and params.ttf_steps < 1:
        problems.append("Test-time fine-tuning needs at least 1 step.")
    outputs = [p for p in (params.output, params.uncertainty if params.write_uncertainty else "") if p]
    if len(outputs) == 2 and os.path.abspath(outputs[0]) == os.path.abspath(outputs[1]):
        problems.append("The SR and uncertainty outputs are the same file.")
    inputs = {os.path.abspath(p) for item in params.frames
              for p in (item.frame.path, item.mask.path if item.mask else None) if p}
    for path in outputs:
        if os.path.abspath(path) in inputs:
            problems.append(f"Output {os.path.basename(path)} would overwrite an input.")
        if not path.lower().endswith((".tif", ".tiff")):
            problems.append(f"Output {os.path.basename(path)}: the engine writes GeoTIFF; "
                            f"use a .tif file name.")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            problems.append(f"Output folder {folder} does not exist.")
        elif not os.access(folder, os.W_OK):
            problems.append(f"Output folder {folder} is not writable.")
    return problems


def _file_problem(info: RasterInfo) -> Optional[str]:
    if not info.path:
        return f"not a local file (provider {info.provider}); save it as a GeoTIFF first"
    if not info.path.startswith("/vsi") and not os.path.isfile(info.path):
        return f"file {info.path} not found"
    return None


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _fmt_pair(pair) -> str:
    return f"{_fmt(pair[0])} x {_fmt(pair[1])}"


def _fmt_extent(extent) -> str:
    return "(" + ", ".join(f"{v:.10g}" for v in extent) + ")"
