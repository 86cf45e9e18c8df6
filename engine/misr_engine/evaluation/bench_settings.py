"""The settings of `misr bench`: defaults, the --quick set, and the checks of what was given."""

from __future__ import annotations

from typing import Any

from ..errors import MisrError
from ..models.registry import MODELS, model_spec

DEFAULTS = {"scene_size": 128, "frames": 9, "sizes": [128, 384], "tile_size": 64, "overlap": 16,
            "repeats": 5, "warmup": 2}
QUICK = {"scene_size": 48, "sizes": [48, 144], "tile_size": 48, "repeats": 2, "warmup": 1}


def bench_settings(quick: bool, given: dict[str, int | None], sizes: str | None = None,
                   batch_size: int | None = None, threads: int | None = None,
                   masks: bool = True) -> dict[str, Any]:
    """DEFAULTS, then QUICK with `quick`, then the options `given` (None = not given), checked;
    `masks`: the rasters run with their masks, or without (the automatic cloud screening)."""
    settings: dict[str, Any] = {**DEFAULTS, **(QUICK if quick else {})}
    settings.update({key: value for key, value in given.items() if value is not None})
    if sizes:
        try:
            settings["sizes"] = sorted(int(size) for size in sizes.split(","))
        except ValueError:
            raise MisrError(f"--sizes {sizes}: give LR sides in pixels, e.g. 128,384") from None
    settings.update(batch_size=batch_size, threads=threads, quick=quick, masks=masks)
    for key in ("scene_size", "frames", "tile_size", "repeats"):
        if settings[key] < 1:
            raise MisrError(f"--{key.replace('_', '-')} {settings[key]}: must be at least 1")
    if min(settings["sizes"]) < 1 or settings["warmup"] < 0 or settings["overlap"] < 0:
        raise MisrError("--sizes, --warmup and --overlap must not be negative")
    return settings


def bench_models(models: list[str] | None, weights: str | None) -> list[str]:
    """The models to measure: those given (checked), else every model with shipped weights."""
    names = [model_spec(name).name for name in models] if models else \
        [name for name, spec in MODELS.items() if spec.default_weights.is_file()]
    if weights and len(names) != 1:
        raise MisrError("--weights: give exactly one --model with it")
    return names
