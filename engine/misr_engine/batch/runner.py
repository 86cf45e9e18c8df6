"""The scenes on the cluster: one Dask task per scene, outcomes as they complete, bounded retries."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Callable, Sequence

from .manifest import Scene
from .outcome import FAILED, SceneOutcome
from .worker import run_scene

DEFAULT_RETRIES = 2
"""A scene whose run raises something else than bad input (out of memory, a worker lost) runs
again up to this many times; bad input (a MisrError) fails at once."""


def run_scenes(client: Any, scenes: Sequence[Scene], *, retries: int = DEFAULT_RETRIES,
               torch_threads: int | None = None, resources: dict[str, float] | None = None,
               on_outcome: Callable[[SceneOutcome], None] = lambda outcome: None,
               on_retry: Callable[[Scene, int, str], None] = lambda scene, attempt, error: None,
               task: Callable[..., SceneOutcome] = run_scene) -> list[SceneOutcome]:
    """Run every scene as `task(id, request, torch_threads)` on `client`'s cluster (each asking
    for `resources`), calling `on_outcome` as each one ends. On an interruption, the tasks not
    finished are cancelled and the exception goes on."""
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]  # keys of this batch only, on a long-lived scheduler too
    pending: dict[Any, tuple[Scene, int]] = {}

    def submit(scene: Scene, attempt: int) -> Any:
        future = client.submit(task, scene.id, scene.request, torch_threads, pure=False,
                               key=f"misr-{scene.id}-{token}-{attempt}", resources=resources)
        pending[future] = (scene, attempt)
        return future

    outcomes: list[SceneOutcome] = []
    completed = as_completed([submit(scene, 1) for scene in scenes])
    try:
        for future in completed:
            scene, attempt = pending.pop(future)
            if future.status == "finished":
                outcome = future.result()
            else:
                error = _error_of(future)
                if attempt <= retries:
                    on_retry(scene, attempt, error)
                    completed.add(submit(scene, attempt + 1))
                    continue
                outcome = SceneOutcome(scene.id, FAILED, message=error, output=scene.request.output,
                                       uncertainty=scene.request.uncertainty or "")
            future.release()
            outcome.attempts = attempt
            outcomes.append(outcome)
            on_outcome(outcome)
    finally:
        if pending:
            client.cancel(list(pending))
    return outcomes


def _error_of(future: Any) -> str:
    """A failed task's exception in one line."""
    try:
        exc = future.exception()
    except (Exception, asyncio.CancelledError) as cancelled:  # a cancelled future raises here
        exc = cancelled
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
