"""The engine command line for a run (see docs/cli-contract.md)."""

from __future__ import annotations

import os
from typing import List, Optional, Sequence

from .engine import EngineCapabilities
from .params import RunParameters

TTF_OPTION = "--ttf-steps"


class UnsupportedOption(ValueError):
    """The run asks for something this engine's command line does not offer."""


def build_command(engine_argv: Sequence[str], params: RunParameters,
                  caps: Optional[EngineCapabilities] = None) -> List[str]:
    """``misr super-resolve ...`` for `params`, always with ``--progress json``.

    Output paths must already be chosen (temporary ones included). ``--ttf-steps`` is passed
    only when fine-tuning is on, and only if the engine's ``--help`` lists it.
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
    argv += ["--model", params.model, "--band", str(int(params.band)), "--device", params.device]
    if params.tile_size:
        argv += ["--tile-size", str(int(params.tile_size))]
    if params.ttf_enabled:
        if caps is None or not caps.supports(TTF_OPTION):
            raise UnsupportedOption(f"this engine has no {TTF_OPTION} option "
                                    "(test-time fine-tuning is not available)")
        argv += [TTF_OPTION, str(int(params.ttf_steps))]
    if params.overwrite:
        argv.append("--overwrite")
    argv += ["--progress", "json"]
    return argv


def _path(path: Optional[str]) -> str:
    if not path:
        raise ValueError("an input has no local file")
    return path if path.startswith("/vsi") else os.path.abspath(path)
