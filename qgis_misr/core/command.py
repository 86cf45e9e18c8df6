"""The engine command line for a run (see docs/cli-contract.md)."""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

from .engine import EngineCapabilities
from .params import RunParameters

TTF_OPTION = "--ttf-steps"
ALIGN_OPTION = "--align"
BANDS_OPTION = "--bands"
MASK_KIND_OPTION = "--mask-kind"
NO_AUTO_MASK_OPTION = "--no-auto-mask"
MASK_DILATION_OPTION = "--mask-dilation"
MASK_SNOW_OPTION = "--mask-snow"
MASK_DARK_OPTION = "--mask-dark-areas"
KERNELS_OPTION = "--kernels-out"
SENSOR_MTF_OPTION = "--sensor-mtf"
REFERENCE_FRAME_OPTION = "--reference-frame"
KEEP_NOISY_OPTION = "--keep-noisy-frames"
EXTENT_OPTION = "--extent"


class UnsupportedOption(ValueError):
    """The run asks for something this engine's command line does not offer."""


def build_command(engine_argv: Sequence[str], params: RunParameters,
                  caps: Optional[EngineCapabilities] = None) -> List[str]:
    """``misr super-resolve ...`` for `params`, always with ``--progress json``.

    Output paths must already be chosen (temporary ones included). ``--model`` is left out when
    ``params.model`` is '' (the engine's default), ``--weights`` when ``params.weights`` is ''.
    ``--ttf-steps`` (and ``--kernels-out`` with a kernels file) is passed
    only when fine-tuning is on, and only if the engine's ``--help`` lists it; ``--sensor-mtf`` likewise
    only when a sensor MTF is stated, ``--reference-frame`` only when a date is chosen, ``--extent``
    only when an area is. ``--align`` is
    passed when ``params.align`` is set; it is refused only when `caps` shows an engine whose
    ``--help`` lacks it (without `caps` the engine itself rejects an unknown option). The options
    of masks, screening and bands (docs/cli-contract.md) are passed only when they differ from
    the engine's defaults, each only if the engine's ``--help`` lists it.
    """
    if not params.output:
        raise ValueError("the SR output path is not set")
    argv = list(engine_argv) + ["super-resolve", "--frames"]
    argv += [_path(item.frame.path) for item in params.frames]
    if params.uses_masks:
        argv += ["--masks"] + [_path(item.mask.path if item.mask else None) for item in params.frames]
    argv += ["--output", os.path.abspath(params.output)]
    if params.write_uncertainty and params.uncertainty:
        argv += ["--uncertainty", os.path.abspath(params.uncertainty)]
    if params.model:
        argv += ["--model", params.model]
    if params.weights:
        argv += ["--weights", os.path.abspath(params.weights)]
    if len(params.band_list) > 1:
        _require(caps, BANDS_OPTION, "super-resolving several bands together", known_only=True)
        argv += [BANDS_OPTION, ",".join(str(int(b)) for b in params.band_list)]
    else:
        argv += ["--band", str(int(params.band_list[0]))]
    argv += ["--device", params.device]
    argv += _mask_options(params, caps)
    if params.tile_size:
        argv += ["--tile-size", str(int(params.tile_size))]
    if params.ttf_enabled:
        _require(caps, TTF_OPTION, "test-time fine-tuning")
        argv += [TTF_OPTION, str(int(params.ttf_steps))]
        if params.kernels_out:
            _require(caps, KERNELS_OPTION, "writing the estimated blur kernels")
            argv += [KERNELS_OPTION, os.path.abspath(params.kernels_out)]
    if params.sensor_mtf:
        _require(caps, SENSOR_MTF_OPTION, "stating the sensor's MTF")
        argv += [SENSOR_MTF_OPTION] + [f"{value:g}" for value in params.sensor_mtf]
    if params.reference_frame:
        _require(caps, REFERENCE_FRAME_OPTION, "showing the surface of one date")
        argv += [REFERENCE_FRAME_OPTION, _path(params.reference_frame)]
    if params.keep_noisy_frames and _offered_or_unknown(caps, KEEP_NOISY_OPTION):
        argv.append(KEEP_NOISY_OPTION)  # an engine without the option leaves no frame out: nothing to ask
    if params.align:
        _require(caps, ALIGN_OPTION, "resampling frames onto the first frame's grid", known_only=True)
        argv.append(ALIGN_OPTION)
    if params.extent is not None:
        _require(caps, EXTENT_OPTION, "super-resolving an area of the frames", known_only=True)
        argv += [EXTENT_OPTION] + [repr(float(value)) for value in params.extent]
    if params.overwrite:
        argv.append("--overwrite")
    argv += ["--progress", "json"]
    return argv


def _mask_options(params: RunParameters, caps: Optional[EngineCapabilities]) -> List[str]:
    """The mask-kind, screening and dilation options `params` asks for (none at the defaults)."""
    argv: List[str] = []
    kinds = [item.mask_kind for item in params.frames]
    if params.uses_masks and any(kind != "auto" for kind in kinds):
        _require(caps, MASK_KIND_OPTION, "choosing the kind of the masks", known_only=True)
        argv += [MASK_KIND_OPTION] + (kinds[:1] if len(set(kinds)) == 1 else kinds)
    if not params.uses_masks and not params.auto_mask:
        if _offered_or_unknown(caps, NO_AUTO_MASK_OPTION):  # an engine without it does not screen: nothing to turn off
            argv.append(NO_AUTO_MASK_OPTION)
    if params.mask_dilation is not None:
        _require(caps, MASK_DILATION_OPTION, "growing the masks", known_only=True)
        argv += [MASK_DILATION_OPTION, str(int(params.mask_dilation))]
    for wanted, option, feature in ((params.mask_snow, MASK_SNOW_OPTION, "counting snow as unusable"),
                                    (params.mask_dark_areas, MASK_DARK_OPTION, "counting dark areas as unusable")):
        if wanted and params.uses_masks:
            _require(caps, option, feature, known_only=True)
            argv.append(option)
    return argv


def _offered_or_unknown(caps: Optional[EngineCapabilities], option: str) -> bool:
    """Whether the engine's ``--help`` lists `option`, or the engine was not (or could not be) asked:
    for options that only turn off what an engine without them does not do anyway."""
    return caps is None or not caps.ok or not caps.options or caps.supports(option)


def _require(caps: Optional[EngineCapabilities], option: str, feature: str,
             known_only: bool = False) -> None:
    """Raise UnsupportedOption unless the engine's ``--help`` lists `option`. With
    `known_only`, an engine that was not (or could not be) asked is given the benefit of the doubt."""
    if known_only and (caps is None or not caps.ok or not caps.options):
        return
    if caps is None or not caps.supports(option):
        raise UnsupportedOption(f"this engine has no {option} option ({feature} is not available)")


def _path(path: Optional[str]) -> str:
    if not path:
        raise ValueError("an input has no local file")
    return path if path.startswith("/vsi") else os.path.abspath(path)
