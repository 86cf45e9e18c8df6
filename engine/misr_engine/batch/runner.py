"""The scenes on the cluster: one Dask task per scene, outcomes as they complete, bounded retries."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Callable, Sequence

from .manifest import Scene
from .outcome import FAILED, SceneOutcome
from .worker import run_scene

STOP_GRACE = 30.0
"""Seconds the scenes running when a batch is interrupted get to finish (and be committed)."""
DEFAULT_RETRIES = 2
"""A scene whose run raises something else than bad input (out of memory, a worker lost) runs
again up to this many times; bad input (a MisrError) fails at once."""


def run_scenes(client: Any, scenes: Sequence[Scene], *, retries: int = DEFAULT_RETRIES,
               torch_threads: int | None = None, resources: dict[str, float] | None = None,
               on_outcome: Callable[[SceneOutcome], None] = lambda outcome: None,
               on_retry: Callable[[Scene, int, str], None] = lambda scene, attempt, error: None,
               on_stop: Callable[[int, float], None] = lambda running, grace: None,
               task: Callable[..., SceneOutcome] = run_scene, grace: float = STOP_GRACE) -> list[SceneOutcome]:
    """Run every scene as `task(id, request, torch_threads)` on `client`'s cluster (each asking
    for `resources`), calling `on_outcome` as each one ends. On an interruption the queued scenes
    are cancelled, the running ones get `grace` seconds to finish (`on_stop(running, grace)`; a
    second interruption stops waiting), and the exception goes on."""
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]  # keys of this batch only, on a long-lived scheduler too
    stop = f"misr-stop-{token}"
    pending: dict[Any, tuple[Scene, int]] = {}

    def submit(scene: Scene, attempt: int) -> Any:
        future = client.submit(_unless_stopped, stop, task, scene.id, scene.request, torch_threads, pure=False,
                               key=f"misr-{scene.id}-{token}-{attempt}", resources=resources)
        pending[future] = (scene, attempt)
        return future

    outcomes: list[SceneOutcome] = []

    def ended(future: Any, outcome: SceneOutcome) -> None:
        scene, attempt = pending.pop(future)
        future.release()
        outcome.attempts = attempt
        outcomes.append(outcome)
        on_outcome(outcome)

    completed = as_completed([submit(scene, 1) for scene in scenes])
    try:
        for future in completed:
            scene, attempt = pending[future]
            if future.status == "finished":
                ended(future, future.result())
                continue
            error = _error_of(future)
            if attempt <= retries:
                del pending[future]
                on_retry(scene, attempt, error)
                completed.add(submit(scene, attempt + 1))
                continue
            ended(future, SceneOutcome(scene.id, FAILED, message=error, output=scene.request.output,
                                       uncertainty=scene.request.uncertainty or ""))
    except KeyboardInterrupt:
        for future in _let_running_finish(client, stop, list(pending), grace, on_stop):
            ended(future, future.result())
        raise
    finally:
        if pending:
            client.cancel(list(pending))
    return outcomes


def _unless_stopped(stop: str, task: Callable[..., SceneOutcome], *args: Any) -> SceneOutcome | None:
    """Run `task(*args)` on a worker unless the batch's `stop` event is set (then None: a scene
    a worker picked up after the interruption never starts)."""
    from distributed import Event

    return None if Event(stop).is_set() else task(*args)


def _let_running_finish(client: Any, stop: str, futures: list[Any], grace: float,
                        on_stop: Callable[[int, float], None]) -> list[Any]:
    """Set the `stop` event (no scene starts after it), cancel the queued `futures`, wait up to
    `grace` s for the running ones (their outputs are committed then, not killed half written);
    the ones that finished well."""
    from distributed import Event, wait

    Event(stop, client=client).set()  # returns once the scheduler holds it: the keys below are final
    running_keys = _executing_keys(client)
    running = [future for future in futures if future.key in running_keys or _finished_well(future)]
    started = {future.key for future in running}
    client.cancel([future for future in futures if future.key not in started])
    if running:
        on_stop(len(running), grace)
        try:
            wait(running, timeout=grace)
        except (KeyboardInterrupt, TimeoutError):  # interrupted again, or too long: stop now
            pass
    return [future for future in running if _finished_well(future)]


def _finished_well(future: Any) -> bool:
    """Whether `future` ended with a scene's outcome (not an error, nor skipped after a stop)."""
    return future.status == "finished" and future.result() is not None


def _executing_keys(client: Any) -> set:
    """The keys of the tasks the workers are executing now (not those only queued there)."""
    try:
        found = client.run(_executing, on_error="ignore")
    except Exception:  # noqa: BLE001 - an older distributed: what the scheduler has handed out
        found = client.processing()
    return {key for keys in found.values() for key in keys}


def _executing(dask_worker: Any) -> list:
    return [task.key for task in dask_worker.state.executing]


def _error_of(future: Any) -> str:
    """A failed task's exception in one line."""
    try:
        exc = future.exception()
    except (Exception, asyncio.CancelledError) as cancelled:  # a cancelled future raises here
        exc = cancelled
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
