"""Checks a run's inputs before the engine starts: every problem as one readable line.

The engine checks the same things (and is the authority); checking here lets the dialog show
the problems next to the inputs and keep Run disabled instead of failing after a start-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .command import REFERENCE_FRAME_OPTION, SENSOR_MTF_OPTION
from .engine import EngineCapabilities, UnknownModel
from .grid import coarser_factor, covered_share, mismatches, offset_of, offset_words
from .params import (
    ALIGN_LABEL,
    SENSOR_MTF_FORMAT,
    FrameInput,
    RasterInfo,
    RunParameters,
)

MIN_SCREENED_FRAMES = 3
"""Frames the engine's automatic cloud screening needs (``misr_engine.registration.screening``)."""

FINE_TUNABLE = "fine-tunable"
"""The capability (``misr models --json``) a model needs for test-time fine-tuning."""
ONE_FRAME_NOTE = ("One frame: the network has no other acquisition to fuse, so the result is a "
                  "single-image upscaling; several frames of the scene give more detail.")


def grid_mismatch(reference: RasterInfo, other: RasterInfo) -> List[str]:
    """How `other` is off `reference`'s grid ([] when the engine takes them as one grid)."""
    return mismatches(reference.grid, other.grid, (reference.crs, other.crs))


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
    offset: Optional[Tuple[int, int]] = None
    """(columns, rows) off the first frame's pixel grid when it is another footprint on that grid
    and the engine reads such rasters as they are (no --align); None otherwise."""
    covered: float = 0.0
    """With an offset: the share of the first frame it covers."""

    @property
    def as_it_is(self) -> bool:
        """Whether the engine reads it as it is, whole pixels off (a note, not a problem)."""
        return self.offset is not None and self.covered > 0

    def _head(self) -> str:
        return f"{self.role} {self.raster.name}: {'; '.join(self.mismatches)} ({self.reference})"

    def problem_line(self) -> str:
        """The blocking problem: what differs, and what to do about it."""
        if self.offset is not None:
            return (f"{self.role} {self.raster.name}: does not overlap {self.reference} (it starts "
                    f"{offset_words(*self.offset)} its first pixel, on its pixel grid).")
        if not self.alignable:
            return (f"{self._head()}; it cannot be resampled onto the first frame's grid "
                    f"because only one of the two has a CRS.")
        return f"{self._head()}. Tick \"{ALIGN_LABEL}\" to resample it."

    def note_line(self) -> str:
        """The informational note when the engine reads it as it is, or resamples it (``--align``)."""
        if self.offset is not None:
            cover = f"; it covers {100 * self.covered:.3g}% of {self.reference}" if self.covered < 1 else ""
            return (f"{self.role} {self.raster.name}: starts {offset_words(*self.offset)} the first pixel of "
                    f"{self.reference}, on its pixel grid (another footprint): read as it is, not resampled{cover}.")
        method = "bilinear" if self.role == "Frame" else "nearest neighbour"
        return f"{self._head()}: will be resampled onto the first frame's grid ({method})."


def off_grid(frames: Sequence[FrameInput], align: bool = False, footprints: bool = False) -> List[OffGrid]:
    """Frames off the first frame's grid, and masks off their frame's grid (with `align`: off
    the first frame's grid, which is where the engine resamples everything). With `footprints`
    (an engine that reads other footprints on the first frame's pixel grid as they are), such a
    frame carries its offset, and its mask, on its own grid, moves with it."""
    if not frames:
        return []
    reference = frames[0].frame
    first = f"frame {reference.name}"
    found = []
    for index, item in enumerate(frames):
        frame = _finding("Frame", item.frame, reference, first, footprints) if index else None
        if frame is not None:
            found.append(frame)
        if item.mask is None or (frame is not None and frame.offset is not None
                                 and not grid_mismatch(item.frame, item.mask)):
            continue  # no mask, or one on its frame's grid that moves with it
        on_frame = not align and not (frame is not None and frame.as_it_is)  # the engine's target
        target, label = (item.frame, f"its frame {item.frame.name}") if on_frame else (reference, first)
        if coarser_factor(item.mask.grid, item.frame.grid):
            continue  # read onto its frame's grid by nearest neighbour (and moved with it): a note, not a problem
        mask = _finding("Mask", item.mask, target, label, footprints)
        if mask is not None:
            found.append(mask)
    return found


def _finding(role: str, raster: RasterInfo, target: RasterInfo, label: str, footprints: bool) -> Optional[OffGrid]:
    """How `raster` is off `target`'s grid (None when on it)."""
    mismatches = grid_mismatch(target, raster)
    if not mismatches:
        return None
    offset = offset_of(target.grid, raster.grid) if footprints else None
    return OffGrid(role, raster, label, tuple(mismatches), alignable=bool(target.grid.crs) == bool(raster.grid.crs),
                   offset=offset, covered=covered_share(target.grid, raster.grid, offset) if offset else 0.0)


def footprints_read(caps: Optional[EngineCapabilities]) -> bool:
    """Whether the engine reads other footprints on the first frame's pixel grid as they are
    (``limits.other_footprints``); without a successful probe the engine is left to refuse."""
    return caps is None or not caps.ok or bool(caps.limits.other_footprints)


def alignment_notes(params: RunParameters, footprints: bool = False) -> List[str]:
    """The frames and masks the engine reads as they are, whole pixels off the first frame's grid
    (with `footprints`; one line each, or one line for three or more), and, with ``params.align``,
    one line per one it will resample (not problems)."""
    found = off_grid(params.frames, params.align, footprints)
    as_is = [finding for finding in found if finding.as_it_is]
    notes = [finding.note_line() for finding in as_is] if len(as_is) < 3 else [_footprints_line(as_is)]
    return notes + [finding.note_line() for finding in found
                    if params.align and finding.alignable and finding.offset is None]


def _footprints_line(found: Sequence[OffGrid]) -> str:
    """One note for several rasters read as they are, whole pixels off the first frame's grid."""
    low, high = min(f.covered for f in found), max(f.covered for f in found)
    cover = "" if low >= 1 else (f"; each covers {100 * low:.3g}-{100 * high:.3g}% of it" if high > low
                                 else f"; each covers {100 * low:.3g}% of it")
    return (f"{', '.join(f.raster.name for f in found)}: their own footprints on the pixel grid of "
            f"{found[0].reference}, whole pixels off it: read as they are, not resampled{cover}.")


def coarse_mask_notes(params: RunParameters) -> List[str]:
    """One line per mask whose pixels are a whole multiple of its frame's (a 20 m SCL beside 10 m
    bands): the engine reads it by nearest neighbour."""
    by_factor: dict = {}
    for item in params.frames:
        factor = coarser_factor(item.mask.grid, item.frame.grid) if item.mask is not None else None
        if factor:
            by_factor.setdefault(factor, []).append(item.mask.name)
    return [f"{'Mask' if len(names) == 1 else 'Masks'} {', '.join(names)}: pixels {factor}x larger than "
            f"the frame's: read onto the frame's grid by nearest neighbour." for factor, names in by_factor.items()]


def screening_notes(params: RunParameters) -> List[str]:
    """What happens to clouds in a run without masks: screened by the engine (naming the frames
    that have no nodata value either), or not."""
    if params.uses_masks or not params.frames:
        return []
    if not params.auto_mask:
        return ["No cloud masks and automatic cloud screening is off: clouds and shadows will show in "
                "the result."]
    if len(params.frames) < MIN_SCREENED_FRAMES:
        return [f"No cloud masks: automatic cloud screening needs {MIN_SCREENED_FRAMES} frames; clouds "
                f"will show in the result."]
    bare = [item.frame.name for item in params.frames if item.frame.nodata is None]
    which = (f"Frames without a mask or a nodata value ({', '.join(bare)}): " if bare
             else "No cloud masks: ")
    return [which + "the engine screens clouds and shadows automatically from the time series "
                    "(pixels much brighter or darker than the other dates)."]


def frame_count_notes(params: RunParameters, caps: Optional[EngineCapabilities] = None) -> List[str]:
    """More frames chosen than the engine uses (its ``limits.max_frames``): which it keeps."""
    most = caps.limits.max_frames if caps is not None and caps.ok else None
    if not most or len(params.frames) <= most:
        return []
    pool = caps.limits.screening_pool
    screened = f" ({pool * most} of them at most are screened)" if pool and len(params.frames) > pool * most else ""
    how = ("by their masks" if params.uses_masks else
           f"once it has screened them for clouds{screened}" if params.auto_mask else "by their valid pixels")
    return [(f"{len(params.frames)} frames chosen: the engine uses the {most} clearest {how}; the run's "
             "messages name the others.")]


def run_notes(params: RunParameters, caps: Optional[EngineCapabilities] = None) -> List[str]:
    """What people should know about a run that is not a problem: a single frame, more frames than
    the engine uses (`caps`: its probe, when known), frames the engine will resample, coarse masks,
    automatic cloud screening."""
    notes = [ONE_FRAME_NOTE] if len(params.frames) == 1 else []
    return (notes + frame_count_notes(params, caps) + alignment_notes(params, footprints_read(caps))
            + coarse_mask_notes(params)
            + screening_notes(params))


def ttf_frames_problem(frame_count: int, caps: Optional[EngineCapabilities]) -> Optional[str]:
    """Why test-time fine-tuning cannot run on `frame_count` frames (the engine's
    ``limits.min_ttf_frames``), or None. Unknown limits are left to the engine."""
    minimum = caps.limits.min_ttf_frames if caps is not None and caps.ok else None
    if minimum and frame_count < minimum:
        return (f"Test-time fine-tuning needs at least {minimum} frames "
                f"(each is predicted from the others); {frame_count} chosen.")
    return None


def validate_inputs(frames: Sequence[FrameInput], band: int = 1, align: bool = False,
                    bands: Sequence[int] = (), footprints: bool = False) -> List[str]:
    """Problems with the frames and masks, [] when the engine can read them as one stack.

    Grid mismatches are problems unless `align` is set and the engine can resample the raster,
    or (with `footprints`) the raster is another footprint on the first frame's pixel grid that
    overlaps it (see :func:`alignment_notes`); the problem line then says which option fixes it.
    """
    if not frames:
        return ["Choose at least one frame (tick it in the Frames list)."]
    problems: List[str] = []
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
    problems += [finding.problem_line() for finding in off_grid(frames, align, footprints)
                 if not finding.as_it_is and not (align and finding.alignable and finding.offset is None)]
    numbers = list(bands) or [band]
    if len(set(numbers)) != len(numbers):
        problems.append(f"Bands {', '.join(map(str, numbers))}: a band is chosen twice.")
    if min(numbers) < 1:
        problems.append(f"Band {min(numbers)}: bands are numbered from 1.")
    else:
        for item in frames:
            missing = [b for b in numbers if b > item.frame.band_count]
            if missing:
                problems.append(f"Frame {item.frame.name} has {item.frame.band_count} band(s); "
                                f"band {', '.join(map(str, missing))} does not exist.")
    return problems


def validate_parameters(params: RunParameters, caps: Optional[EngineCapabilities] = None) -> List[str]:
    """All problems of a run: inputs, outputs, tile size and, when `caps` is a successful probe
    of the engine, the model and its limits (without it the engine is left to refuse)."""
    problems = validate_inputs(params.frames, params.band, params.align, params.bands, footprints_read(caps))
    problems += _engine_problems(params, caps) if caps is not None and caps.ok else []
    if params.ttf_enabled and params.ttf_steps < 1:
        problems.append("Test-time fine-tuning needs at least 1 step.")
    if params.weights and not os.path.isfile(params.weights):
        problems.append(f"Weights: file {params.weights} not found.")
    if params.ttf_enabled and params.kernels_out:
        folder = os.path.dirname(os.path.abspath(params.kernels_out))
        if not params.kernels_out.lower().endswith(".json"):
            problems.append(f"Blur kernels {os.path.basename(params.kernels_out)}: use a .json file name.")
        elif not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            problems.append(f"Blur kernels: folder {folder} does not exist or is not writable.")
    if params.reference_frame and os.path.abspath(params.reference_frame) not in {
            os.path.abspath(item.frame.path) for item in params.frames if item.frame.path}:
        problems.append("Surface shown: the frame of that date is not among the frames ticked.")
    if params.extent is not None and params.frames and not _overlaps(params.extent, params.frames[0].frame.extent):
        problems.append("Area: it does not overlap the first frame (choose it in the frames' CRS, or Whole frames).")
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


def _overlaps(area: Tuple[float, float, float, float], extent: Tuple[float, float, float, float]) -> bool:
    """Whether two (xmin, ymin, xmax, ymax) rectangles share more than an edge."""
    return area[0] < extent[2] and extent[0] < area[2] and area[1] < extent[3] and extent[1] < area[3]


def _engine_problems(params: RunParameters, caps: EngineCapabilities) -> List[str]:
    """The model, the tile size and the sensor MTF against what the engine reported."""
    problems = []
    minimum = caps.limits.min_tile_size
    if params.tile_size and minimum and params.tile_size < minimum:
        problems.append(f"Tile size {params.tile_size}: must be at least {minimum} pixels "
                        f"(or 0 for the engine's default).")
    if params.sensor_mtf:
        problems += _sensor_mtf_problems(params.sensor_mtf, len(params.band_list), caps)
    if params.reference_frame and caps.options and not caps.supports(REFERENCE_FRAME_OPTION):
        problems.append(f"Surface shown: this engine's 'misr super-resolve --help' has no {REFERENCE_FRAME_OPTION} "
                        "option (update the engine, or show the mean of the dates).")
    try:
        model = caps.model(params.model)
    except UnknownModel as exc:
        return problems + [f"Model: {exc}."]
    if params.ttf_enabled and not model.can(FINE_TUNABLE):
        problems.append(f"Test-time fine-tuning: {model.label} is not fine-tunable.")
    too_few = ttf_frames_problem(len(params.frames), caps) if params.ttf_enabled else None
    return problems + ([too_few] if too_few else [])


def _sensor_mtf_problems(values: Tuple[float, ...], band_count: int, caps: EngineCapabilities) -> List[str]:
    """A stated sensor MTF against the run and the engine: one value or one per band, the option
    offered, every value in its range."""
    if caps.options and not caps.supports(SENSOR_MTF_OPTION):
        return [f"Sensor MTF: this engine's 'misr super-resolve --help' has no {SENSOR_MTF_OPTION} option."]
    problems = []
    if len(values) not in (1, band_count):
        problems.append(f"Sensor MTF: {len(values)} values for {band_count} band{'s' * (band_count > 1)}; "
                        f"give {SENSOR_MTF_FORMAT}.")
    bounds = caps.limits.sensor_mtf_range
    for mtf in values:
        if bounds and not bounds[0] <= mtf <= bounds[1]:
            problems.append(f"Sensor MTF {mtf:g}: must be between {bounds[0]:g} and {bounds[1]:g} (the MTF "
                            f"at the frames' Nyquist frequency), or unset for the engine's own.")
    return problems


def _file_problem(info: RasterInfo) -> Optional[str]:
    if not info.path:
        return f"not a local file (provider {info.provider}); save it as a GeoTIFF first"
    if not info.path.startswith("/vsi") and not os.path.isfile(info.path):
        return f"file {info.path} not found"
    return None



def preselect(candidates: Sequence[RasterInfo], reference: Optional[RasterInfo] = None) -> List[bool]:
    """Which of `candidates` to tick as frames without being asked: local files on
    `reference`'s grid (the first frame already ticked); without one, the local files on the
    grid most of them share (ties: the grid of the first). A basemap from a web service, or a
    mosaic on another grid, is not ticked."""
    local = [index for index, info in enumerate(candidates) if info.path]
    if reference is None:
        groups: List[List[int]] = []
        for index in local:
            group = next((g for g in groups if not grid_mismatch(candidates[g[0]], candidates[index])), None)
            if group is None:
                groups.append([index])
            else:
                group.append(index)
        chosen = set(max(groups, key=len)) if groups else set()
    else:
        chosen = {index for index in local if not grid_mismatch(reference, candidates[index])}
    return [index in chosen for index in range(len(candidates))]
