"""The parameters of one super-resolution run, as plain dataclasses.

The dialog and the Processing algorithm both fill a :class:`RunParameters`; everything after
that (validation, the engine command line, the task) reads only this object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from .grid import GeoTransform, Grid

DEFAULT_TTF_STEPS = 20  # the engine's limits.default_ttf_steps (chosen on validation scenes) when it reports none
ALIGN_LABEL = "Resample frames on other grids onto the first frame's grid"
AREA_LABEL = "Area to super-resolve (empty = the whole frames)"
AREA_TOOLTIP = ("Only the frames' pixels this area touches are read and super-resolved (snapped outward to "
                "whole pixels of the first frame; the engine reads 16 pixels of context around them): a "
                "field or a town out of a whole Sentinel-2 tile, in minutes instead of hours. The result "
                "covers the area alone, on the frames' grid.")
TTF_TOOLTIP = ("Before fusing, a copy of the network is fine-tuned on the frames themselves: each frame "
               "predicted from the others through a blur kernel estimated for it (about 2.5 s a step on one "
               "CPU thread; the shipped weights are not changed). On the project's test scenes the default 20 "
               "steps helped a little on frames blurred well beyond the training data (+0.10 to +0.15 dB on "
               "average) and changed little elsewhere (-0.06 to +0.02 dB; docs/evaluation/adaptation); the "
               "blur kernels it estimates can be written to a file.")
KEEP_NOISY_LABEL = "Keep frames far noisier than the others"
KEEP_NOISY_TOOLTIP = ("By default the engine leaves out of the run every frame at least 5 times as noisy as the "
                      "median frame (a hazy or dark date, another sensor) and names it in a warning: the network "
                      "weighs every frame alike, and one such frame costs the SR more than its date adds "
                      "(0.7 to 2.5 dB at 5 times, 2 to 8 dB at 10 times on validation scenes). Tick to keep them.")
"""The dialog's checkbox and the Processing parameter for the engine's ``--align``."""
SENSOR_MTF_TOOLTIP = ("The sensor's MTF at the frames' Nyquist frequency, as its data-quality report gives it "
                      "per band (optics, detector and motion together; a resampled product's is lower). The "
                      "engine then makes the SR consistent with the frames through that blur. Leave it at the "
                      "engine's default (Sentinel-2-like, adjusted per scene for frames much sharper or "
                      "blurrier than that) "
                      "unless you know it: a value lower than the true one oversharpens. Frames made by "
                      "averaging finer pixels (no optical blur): 0.63.")
"""What the dialog's and Processing's sensor MTF option (``--sensor-mtf``) is for."""
SENSOR_MTF_FORMAT = "one value for every band (0.28) or one per band, in band order (0.28, 0.26, 0.25)"
"""How the dialog and Processing take the sensor MTF as text (`parse_sensor_mtf`)."""


def parse_sensor_mtf(text: str) -> Tuple[float, ...]:
    """The sensor MTF values in `text` (`SENSOR_MTF_FORMAT`; commas, semicolons or spaces between
    them); () for an empty text or 0, the engine's own. ValueError names the text otherwise."""
    parts = [part for part in re.split(r"[,;\s]+", text.strip()) if part]
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        raise ValueError(f"Sensor MTF {text.strip()!r}: give {SENSOR_MTF_FORMAT}.") from None
    return () if values in ((), (0.0,)) else values


@dataclass(frozen=True)
class RasterInfo:
    """What validation needs to know about one raster (read from a QGIS layer or a file).

    ``crs`` names the CRS for people (an authority id such as ``EPSG:32633``; '' = none or
    unnamed); ``crs_wkt`` and ``geotransform`` are the file's own, as GDAL (and so the engine)
    reads them, when known. ``extent`` is (xmin, ymin, xmax, ymax) in that CRS; ``pixel_size``
    is (x, y), positive. ``path`` is the local file the engine will read, or None when the layer
    has none (a web service, a memory layer...), in which case ``provider`` says what it is.
    """

    name: str
    path: Optional[str]
    crs: str
    extent: Tuple[float, float, float, float]
    width: int
    height: int
    pixel_size: Tuple[float, float]
    band_count: int = 1
    provider: str = "gdal"
    layer_id: Optional[str] = None
    crs_wkt: str = ""
    geotransform: Optional[GeoTransform] = None
    nodata: Optional[float] = None
    """Band 1's nodata value, None when it has none."""

    @property
    def grid(self) -> Grid:
        """The grid the engine compares (north-up from extent and pixel size when the file's
        geotransform is not known)."""
        crs = self.crs_wkt or self.crs
        if self.geotransform is not None:
            return Grid(crs, tuple(self.geotransform), self.width, self.height)
        return Grid.north_up(crs, self.extent, self.pixel_size, self.width, self.height)


@dataclass(frozen=True)
class FrameInput:
    """One frame of the time series and its optional clear-sky mask."""

    frame: RasterInfo
    mask: Optional[RasterInfo] = None
    mask_kind: str = "auto"
    """What the mask is (core.masks.KINDS), or ``auto``: the engine detects it from its values."""


@dataclass
class RunParameters:
    """Everything one run needs. Empty output paths mean temporary files."""

    frames: List[FrameInput] = field(default_factory=list)
    band: int = 1
    model: str = ""
    """A model name from ``misr models --json``; '' = the engine's default."""
    weights: str = ""
    """A weights file for the model (shipped: ``weights_options`` of ``misr models --json``, or
    one written by ``misr adapt``); '' = the model's default weights."""
    ttf_enabled: bool = False
    ttf_steps: int = DEFAULT_TTF_STEPS
    kernels_out: str = ""
    """With fine-tuning: a JSON file for the blur kernels it estimated per frame ('' = none)."""
    sensor_mtf: Tuple[float, ...] = ()
    """The sensor's MTF at the frames' Nyquist frequency (``--sensor-mtf``): one value for every
    band or one per band of `band_list`; () = the engine's own."""
    reference_frame: str = ""
    """The file of one of `frames` whose date the SR shows where the surface changed
    (``--reference-frame``); '' = the clear-temporal mean of the frames."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (an id from ``misr devices --json``)."""
    tile_size: int = 0
    """LR tile size in pixels; 0 = the engine's default."""
    output: str = ""
    uncertainty: str = ""
    write_uncertainty: bool = True
    overwrite: bool = False
    run_name: str = ""
    keep_noisy_frames: bool = False
    """Keep frames far noisier than the others (``--keep-noisy-frames``; default: the engine
    leaves them out, naming each in a warning)."""
    align: bool = False
    """Let the engine resample frames and masks off the first frame's grid onto it
    (``--align``: frames bilinear, masks nearest, in memory) instead of refusing them."""
    extent: Optional[Tuple[float, float, float, float]] = None
    """(xmin, ymin, xmax, ymax) in the first frame's CRS: super-resolve only this area
    (``--extent``); None = the whole frames."""

    bands: Tuple[int, ...] = ()
    """Several bands (1-based) super-resolved together (``--bands``); () = just ``band``."""
    auto_mask: bool = True
    """Without masks, let the engine screen clouds and shadows from the time series."""
    mask_dilation: Optional[int] = None
    """Pixels the unusable areas grow by; None = the engine's default."""
    mask_snow: bool = False
    mask_dark_areas: bool = False

    @property
    def uses_masks(self) -> bool:
        return any(item.mask is not None for item in self.frames)

    @property
    def band_list(self) -> Tuple[int, ...]:
        """Every band the run super-resolves."""
        return tuple(self.bands) or (int(self.band),)
