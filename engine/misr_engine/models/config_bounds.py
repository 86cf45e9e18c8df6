"""Bounds on a network's config, declared next to each config class and checked before anything
is built: a weights file's embedded config is data from outside, and a config asking for a
million features or blocks would have the process killed for memory before it could say why.

A config dataclass declares its bounds as a class attribute (not annotated: not a field), beside
its fields:

    BOUNDS = {"n_feat": Bound(1, 256), "deconv_kernel": Bound(0, 63, odd=True)}

Every int or float field must have a bound (`tests/engine/models/test_config_bounds.py` checks
that each registered model's config does); bool fields must be booleans.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from ..errors import MisrError


@dataclass(frozen=True)
class Bound:
    """`low` <= value <= `high`; with `odd`, a value other than 0 must be odd (a kernel size)."""

    low: float
    high: float
    odd: bool = False

    def problem(self, value: float) -> str | None:
        """Why `value` is out of bounds, or None."""
        if not math.isfinite(value) or not self.low <= value <= self.high:
            return f"must be between {self.low:g} and {self.high:g}"
        if self.odd and value and int(value) % 2 == 0:
            return "must be 0 or odd"
        return None


def bounds_of(config_class: type) -> dict[str, Bound]:
    """The bounds a config class declares (empty if none)."""
    return dict(getattr(config_class, "BOUNDS", {}))


def unbounded_fields(config_class: type) -> list[str]:
    """Numeric fields of a config class without a declared bound (there should be none)."""
    bounds = bounds_of(config_class)
    return [f.name for f in dataclasses.fields(config_class)
            if f.type in ("int", "float", int, float) and f.name not in bounds]


def checked_config(config_class: type, raw: Any, source: str) -> Any:
    """An instance of `config_class` from `raw` (a JSON text or dict: a weights file's embedded
    config), or a one-line MisrError naming `source` and the key: unknown keys, wrong types and
    values out of the declared bounds are refused. Missing keys take the class's defaults."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise MisrError(f"{source}: its model config is not valid JSON") from None
    if not isinstance(raw, dict):
        raise MisrError(f"{source}: its model config is not a JSON object")
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    bounds = bounds_of(config_class)
    for key, value in raw.items():
        if key not in fields:
            raise MisrError(f"{source}: unknown model config key {key!r} (known: {', '.join(fields)})")
        kind = fields[key].type
        if kind in ("bool", bool):
            if not isinstance(value, bool):
                raise MisrError(f"{source}: model config {key}={value!r}: must be true or false")
            continue
        wants_int = kind in ("int", int)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (wants_int and not isinstance(value, int)):
            raise MisrError(f"{source}: model config {key}={value!r}: must be {'an integer' if wants_int else 'a number'}")
        problem = bounds[key].problem(value) if key in bounds else None
        if problem:
            raise MisrError(f"{source}: model config {key}={value!r}: {problem}")
    try:
        return config_class(**raw)
    except (TypeError, ValueError) as exc:
        raise MisrError(f"{source}: invalid model config ({exc})") from None
