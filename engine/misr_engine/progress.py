"""Progress reporting: a terminal bar for people, JSON lines for the QGIS plugin."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from tqdm import tqdm

EVENTS = ("start", "progress", "warning", "log", "done", "error")
"""The names of the JSON-lines events (``--progress json``; docs/cli-contract.md)."""

Say = Callable[[str], None]
"""Where a step that comes before the network (screening, registration, the scene's units) says
what it is doing; a run turns it into a `progress` event whose fraction does not move."""

T = TypeVar("T")


def staged(say: Say | None, stage: str) -> Say | None:
    """`say` with every message prefixed by `stage` (None stays None)."""
    return None if say is None else (lambda text: say(f"{stage}: {text}"))


def counted(items: Sequence[T], say: Say | None) -> Iterator[T]:
    """`items`, saying "N%" after each one that completes another whole percent (after the caller
    has used it: the percentage is of the work done, not read)."""
    said = 0
    for done, item in enumerate(items, 1):
        yield item
        percent = min(100, math.floor(100 * done / len(items)))
        if say is not None and percent > said:
            said = percent
            say(f"{percent}%")


class Progress:
    """Reports events of a run. mode: 'bar' (stderr), 'json' (stdout lines) or 'none'."""

    def __init__(self, mode: str = "bar"):
        if mode == "bar" and not sys.stderr.isatty():
            mode = "none"
        self.mode = mode
        self._bar: tqdm | None = None

    def event(self, name: str, **fields: Any) -> None:
        """Emit a named event (one of EVENTS). Without JSON, warnings are printed as
        ``misr: warning: ...`` lines, ``log`` events as ``misr: note: ...`` lines and a ``done``
        event's ``summary`` as a line of its own."""
        if name not in EVENTS:
            raise ValueError(f"unknown progress event {name!r}")
        if self.mode == "json":
            print(json.dumps({"event": name, **fields}), flush=True)
        elif name in ("warning", "log"):
            self._write(f"misr: {'warning' if name == 'warning' else 'note'}: {fields['message']}")
        elif name == "done" and fields.get("summary"):
            self.close()
            self._write(str(fields["summary"]))

    def update(self, fraction: float, message: str = "") -> None:
        """Report that a `fraction` in [0, 1] of the work is done."""
        if self.mode == "json":
            self.event("progress", fraction=round(float(fraction), 4), message=message)
        elif self.mode == "bar":
            if self._bar is None:
                self._bar = tqdm(total=1000, unit="", bar_format="{l_bar}{bar}| {elapsed}<{remaining}",
                                 file=sys.stderr)
            self._bar.n = int(fraction * 1000)
            self._bar.set_description(message, refresh=True)

    def note(self, text: str) -> None:
        """A line for people (stderr, above the bar); a 'log' event in JSON mode."""
        if self.mode == "json":
            self.event("log", message=text)
        else:
            self._write(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)
