"""What runs on a Dask worker: one scene through the shared pipeline, the network loaded once per
worker process (a module-level cache keyed by backend, model, weights hash, device and
precision) and scenes run one at a time per process, each with the worker's threads."""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import TYPE_CHECKING

from ..errors import MisrError
from ..inference.budget import peak_rss_mib
from ..pipeline import SuperResolveRequest, super_resolve_files
from .outcome import DONE, FAILED, SceneOutcome
from .provenance import checksum, weights_sha256

if TYPE_CHECKING:
    from ..inference.engine import Engine

_ENGINES: dict[tuple, "Engine"] = {}
_LOCK = threading.Lock()


def run_scene(scene_id: str, request: SuperResolveRequest, torch_threads: int | None = None) -> SceneOutcome:
    """Super-resolve one scene. A MisrError (bad input: a retry would fail alike) is returned as
    a failed outcome; anything else (out of memory, a bug) is raised, for the batch to retry."""
    with _LOCK:  # the process's network and threads serve one scene at a time
        _set_threads(torch_threads)
        started = time.perf_counter()
        outcome = SceneOutcome(scene_id, FAILED, worker=_worker_address(), output=request.output,
                               uncertainty=request.uncertainty or "")
        try:
            with warnings.catch_warnings(record=True) as caught:  # library warnings: one line each, reported
                warnings.simplefilter("default")
                engine, outcome.loaded_model = engine_for(request)
                outcome.device = str(engine.device)
                result = super_resolve_files(request, engine=engine)
        except MisrError as exc:
            outcome.message = str(exc)
            outcome.seconds = round(time.perf_counter() - started, 2)
            return outcome
    outcome.status, outcome.seconds = DONE, round(time.perf_counter() - started, 2)
    outcome.peak_rss_mb = peak_rss_mib()
    outcome.warnings = list(result.warnings) + [_one_line(item.message) for item in caught]
    outcome.frames, outcome.frames_left_out = len(result.frames), "; ".join(result.left_out)
    outcome.output_sha256 = checksum(result.output)
    outcome.uncertainty_sha256 = checksum(result.uncertainty)
    return outcome


def engine_for(request: SuperResolveRequest) -> tuple["Engine", bool]:
    """This process's network for `request` (and whether it was loaded now): loaded on first use."""
    from ..inference.engine import open_engine
    key = (request.backend, request.model, weights_sha256(request), request.device, request.precision)
    if key in _ENGINES:
        return _ENGINES[key], False
    _ENGINES[key] = open_engine(request.backend, request.model, request.weights, request.device,
                                request.precision)
    return _ENGINES[key], True


def _set_threads(count: int | None) -> None:
    """torch's threads: `count`, or the Dask worker's thread count (Dask's nanny sets
    OMP_NUM_THREADS=1 in its workers, which would leave torch one thread)."""
    import torch
    if count is None:
        try:
            from distributed import get_worker
            count = get_worker().state.nthreads
        except (ImportError, ValueError, AttributeError):
            count = os.cpu_count() or 1
    if torch.get_num_threads() != count:
        torch.set_num_threads(max(1, int(count)))


def _worker_address() -> str:
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _one_line(message: Warning | str) -> str:
    return (str(message).strip().splitlines() or [type(message).__name__])[0]
