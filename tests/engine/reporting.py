"""A reporter for engine runs in tests (``pipeline.Reporter``): keeps what a run says."""

from __future__ import annotations


class Recorder:
    """Keeps the run's `log` messages (`notes`), its progress as (fraction, message) pairs
    (`progress`) and its `done` event's fields (`done`)."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.progress: list[tuple[float, str]] = []
        self.done: dict = {}

    def event(self, name: str, **fields) -> None:
        if name == "log":
            self.notes.append(fields["message"])
        elif name == "done":
            self.done = fields

    def update(self, fraction: float, message: str = "") -> None:
        self.progress.append((fraction, message))
