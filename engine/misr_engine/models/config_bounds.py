"""Bounds on a config, declared next to each config class and checked before anything is built
or run: a weights file's embedded config is data from outside, and a config asking for a
million features or blocks would have the process killed for memory before it could say why;
a training config is a user's file, and a wrong type in it should not surface as a traceback
minutes into a run.

A config dataclass declares its bounds as a class attribute (not annotated: not a field), beside
its fields:

    BOUNDS = {"n_feat": Bound(1, 256), "deconv_kernel": Bound(0, 63, odd=True),
              "loss": OneOf(("l1", "nll"))}

Every int or float field must have a bound (`tests/engine/models/test_config_bounds.py` and
`tests/engine/training/test_config.py` check that each config does); every field's value must
have its annotated type (bool, int, float, str, optional, dict, list of str, or a pair of
numbers: a range, low <= high, each end within the field's bound).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
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


@dataclass(frozen=True)
class OneOf:
    """The value is one of `choices` (a text setting: a loss, a precision)."""

    choices: tuple[Any, ...]

    def problem(self, value: Any) -> str | None:
        """Why `value` is not one of the choices, or None."""
        return None if value in self.choices else f"must be one of {', '.join(map(str, self.choices))}"


def bounds_of(config_class: type) -> dict[str, Bound | OneOf]:
    """The bounds a config class declares (empty if none)."""
    return dict(getattr(config_class, "BOUNDS", {}))


def unbounded_fields(config_class: type) -> list[str]:
    """Numeric fields (and ranges) of a config class without a declared bound (there should be none)."""
    bounds, hints = bounds_of(config_class), typing.get_type_hints(config_class)
    return [f.name for f in dataclasses.fields(config_class)
            if _numeric(hints[f.name]) and f.name not in bounds]


def _numeric(hint: Any) -> bool:
    hint = _optional_of(hint) or hint
    return hint in (int, float) or (typing.get_origin(hint) is tuple and all(a in (int, float) for a in typing.get_args(hint)))


def _optional_of(hint: Any) -> Any:
    """`X` if `hint` is ``X | None``, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        others = [a for a in typing.get_args(hint) if a is not type(None)]
        return others[0] if len(others) == 1 else None
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def type_problem(hint: Any, value: Any) -> str | None:
    """Why `value` (from JSON) does not have the annotated type `hint`, or None."""
    optional = _optional_of(hint)
    if optional is not None:
        return None if value is None else type_problem(optional, value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if hint is float:
        return None if _is_number(value) else "must be a number"
    if hint is str:
        return None if isinstance(value, str) else "must be a text"
    if hint is dict or origin is dict:
        return None if isinstance(value, dict) else "must be a JSON object"
    if origin is list:
        ok = isinstance(value, list) and all(type_problem(args[0], item) is None for item in value)
        return None if ok else f"must be a list of {args[0].__name__}"
    if origin is tuple:
        ok = isinstance(value, (list, tuple)) and len(value) == len(args) and all(map(_is_number, value))
        if not ok:
            return f"must be a list of {len(args)} numbers"
        return None if len(value) != 2 or value[0] <= value[1] else "must be [low, high] with low <= high"
    return None


def value_problem(hint: Any, bound: Bound | OneOf | None, value: Any) -> str | None:
    """Why `value` does not fit its annotated type or its bound (each end of a range), or None."""
    problem = type_problem(hint, value)
    if problem or bound is None or value is None:
        return problem
    for item in (value if isinstance(value, (list, tuple)) and isinstance(bound, Bound) else [value]):
        problem = bound.problem(item)
        if problem:
            return problem
    return None


def checked_config(config_class: type, raw: Any, source: str, kind: str = "model config") -> Any:
    """An instance of `config_class` from `raw` (a JSON text or dict: a weights file's embedded
    config, a training config file's fields), or a one-line MisrError naming `source`, the
    `kind` of config and the key: unknown keys, missing required keys, wrong types and values
    out of the declared bounds are refused. Missing keys with defaults take the defaults."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise MisrError(f"{source}: its {kind} is not valid JSON") from None
    if not isinstance(raw, dict):
        raise MisrError(f"{source}: its {kind} is not a JSON object")
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    bounds, hints = bounds_of(config_class), typing.get_type_hints(config_class)
    for key, value in raw.items():
        if key not in fields:
            raise MisrError(f"{source}: unknown {kind} key {key!r} (known: {', '.join(fields)})")
        problem = value_problem(hints[key], bounds.get(key), value)
        if problem:
            raise MisrError(f"{source}: {kind} {key}={value!r}: {problem}")
    missing = [name for name, f in fields.items() if name not in raw and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise MisrError(f"{source}: {kind} lacks {', '.join(missing)}")
    try:
        return config_class(**raw)
    except (TypeError, ValueError) as exc:
        raise MisrError(f"{source}: invalid {kind} ({exc})") from None
