"""The type of a stack of either kind, named where GDAL need not be imported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from .in_memory import Stack

if TYPE_CHECKING:  # reading files needs GDAL; an in-memory stack does not
    from .stack import LazyStack

AnyStack = Union[Stack, "LazyStack"]
"""A stack in memory or one that reads its frames from files window by window."""
