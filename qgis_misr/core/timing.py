"""How long a run has taken and about how long it has left, from the engine's progress events.

The engine's `fraction` measures the network's work (the tiles, and test-time fine-tuning when it
runs); the steps before it (cloud screening, registration, the scene's units: minutes on a whole
Sentinel-2 tile) report what they are doing with the fraction held. The time left is therefore
estimated only once the fraction moves, from the pace since the current stage began (a stage is
the message's words before its first number: "tile", "test-time fine-tuning", "band").
"""

from __future__ import annotations

import re
import time
from typing import Callable, Optional, Tuple

_STAGE = re.compile(r"^[^\d]*")


def duration_text(seconds: float) -> str:
    """'42 s', '3 min 10 s', '25 min', '2 h 05 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    minutes = round(seconds / 60)  # to the nearest minute from ten minutes on
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _stage(message: str) -> str:
    return _STAGE.match(message).group(0).strip(" :,")


class RunClock:
    """Turns progress events into a status line with the time elapsed and, once the work moves,
    about how long is left: 'tile 40/700 (2 min 10 s elapsed, about 35 min left)'. `update` is
    called with each event (the thread that runs the engine); `text` can be read at any time
    from another (the dialog's timer), the time left counting down between events."""

    def __init__(self, now: Callable[[], float] = time.monotonic):
        self._now = now
        self._started = now()
        self._anchor: Optional[Tuple[str, float, float]] = None
        """(stage, fraction, time) the pace is measured from."""
        self._last: Tuple[str, float, Optional[float], float] = ("", 0.0, None, self._started)
        """(message, fraction, seconds left, time) of the last event, replaced whole."""

    def update(self, fraction: float, message: str) -> Optional[float]:
        """Take one progress event; returns the seconds left (None until the fraction has moved
        within this stage)."""
        now, stage = self._now(), _stage(message)
        anchor, left = self._anchor, None
        if anchor is None or anchor[0] != stage or fraction < anchor[1]:
            self._anchor = (stage, fraction, now) if fraction > 0 else None
        elif fraction > anchor[1]:
            left = (now - anchor[2]) / (fraction - anchor[1]) * (1.0 - fraction)
        self._last = (message, fraction, left, now)
        return left

    def text(self) -> str:
        """The last message with the time elapsed and, when known, the time left, as of now."""
        message, fraction, left, at = self._last
        now = self._now()
        timing = f"{duration_text(now - self._started)} elapsed"
        if left is not None and fraction < 1.0 and left - (now - at) >= 1:
            timing += f", about {duration_text(left - (now - at))} left"
        return f"{message} ({timing})" if message else timing

    def describe(self, fraction: float, message: str) -> str:
        """`update`, then `text`."""
        self.update(fraction, message)
        return self.text()
