"""`--psf-limits NAME=VALUE,...`: a study's engine run with other limits of the PSF width per scene
(``inference.psf_width``), as `--weights` runs it with another network."""

from __future__ import annotations

import argparse

from misr_engine.inference import psf_width

NAMES = ("SHARPENING_LIMIT", "NARROWING_SLOPE", "WIDENING_TRIGGER", "WIDENING_LIMIT", "HELD_OUT_RATIO",
         "NEUTRAL_RATIO")
"""The limits a study may set (``inference.psf_width``'s constants of the same names)."""


def add_psf_limits_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--psf-limits", metavar="NAME=VALUE,...", type=parse_psf_limits,
                        help="run with these limits of the PSF width per scene instead of the engine's ("
                             + ", ".join(NAMES) + "; e.g. SHARPENING_LIMIT=0.05,NARROWING_SLOPE=0.3)")


def parse_psf_limits(text: str) -> dict[str, float]:
    """'NAME=VALUE,...' -> {NAME: VALUE}; an unknown name or a value that is not a number is refused
    in one line (argparse's error)."""
    limits = {}
    for item in text.split(","):
        name, _, value = (part.strip() for part in item.partition("="))
        if name not in NAMES:
            raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(NAMES)}")
        try:
            limits[name] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {value!r} is not a number") from None
    return limits


def apply_psf_limits(limits: dict[str, float] | None) -> None:
    """Set `limits` on ``inference.psf_width`` for the rest of the process (None: as the engine ships)."""
    for name, value in (limits or {}).items():
        setattr(psf_width, name, value)
