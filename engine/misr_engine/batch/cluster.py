"""The Dask cluster a batch runs on: an embedded local cluster sized to the machine (one worker
per GPU when CUDA is present, pinned to it with CUDA_VISIBLE_DEVICES and declaring the worker
resource GPU=1), or an existing cluster given by its scheduler's address or scheduler file."""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from ..errors import MisrError

GPU = "GPU"
"""The worker resource that GPU workers declare (`dask worker --resources GPU=1`); GPU scenes ask for one."""
THREADS_PER_CPU_WORKER = 1
"""A CPU worker gets this many torch threads by default: workers of one thread each give more
scenes per minute than fewer workers with more threads (measured: docs/scale-out.md)."""
MEMORY_PER_WORKER = 3 * 2 ** 30
"""Bytes a worker needs for one scene at the default tile size (fine-tuning: about 2.8 GB)."""
CONNECT_TIMEOUT = "30s"
WORKERS_TIMEOUT = 600.0
"""Seconds a batch waits for the first worker of an existing cluster."""


@dataclass(frozen=True)
class LocalSize:
    """How an embedded cluster is laid out."""

    workers: int
    torch_threads: int  # per worker (each runs one scene at a time)
    memory_limit: int  # bytes per worker
    gpus: tuple[str, ...] = ()  # CUDA device ids, one worker each (empty: CPU workers)


def local_size(cpu_count: int, memory: int, gpus: tuple[str, ...] = (), workers: int | None = None,
               torch_threads: int | None = None) -> LocalSize:
    """One worker per GPU; without GPUs, one per THREADS_PER_CPU_WORKER cores as memory allows.
    `workers` / `torch_threads` override (at most one worker per GPU)."""
    if workers is not None and workers < 1:
        raise MisrError(f"--workers {workers}: must be at least 1")
    if torch_threads is not None and torch_threads < 1:
        raise MisrError(f"--torch-threads {torch_threads}: must be at least 1")
    if gpus:
        gpus = gpus[:workers] if workers else gpus
        count = len(gpus)
    else:
        count = workers or max(1, min(cpu_count // THREADS_PER_CPU_WORKER, memory // MEMORY_PER_WORKER))
    threads = torch_threads or max(1, cpu_count // count)
    return LocalSize(count, threads, max(memory // count, 2 ** 28), tuple(gpus))


def machine_size(device: str, workers: int | None = None, torch_threads: int | None = None) -> LocalSize:
    """`local_size` for this machine and `--device` (cpu: no GPU workers; cuda:N: GPU N only)."""
    import psutil
    return local_size(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
                      psutil.virtual_memory().total, visible_gpus(device), workers, torch_threads)


def visible_gpus(device: str) -> tuple[str, ...]:
    """The CUDA device ids (as CUDA_VISIBLE_DEVICES names them) a local cluster uses for `device`."""
    if device == "cpu":
        return ()
    import torch
    if not torch.cuda.is_available():
        if device.startswith("cuda"):
            raise MisrError(f"--device {device}: CUDA is not available on this machine")
        return ()
    count = torch.cuda.device_count()
    names = [name.strip() for name in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if name.strip()]
    ids = tuple((names or [str(i) for i in range(count)])[:count])
    if device.startswith("cuda:"):
        index = int(device.split(":", 1)[1])
        if index >= len(ids):
            raise MisrError(f"--device {device}: this machine has {len(ids)} GPU(s)")
        return (ids[index],)
    return ids


def gpu_worker_specs(size: LocalSize) -> dict[str, dict[str, Any]]:
    """SpecCluster worker specs: one Nanny per GPU, that GPU alone visible to it, GPU=1 declared."""
    from distributed import Nanny
    return {f"gpu-{gpu}": {"cls": Nanny, "options": {
        "nthreads": 1, "memory_limit": size.memory_limit, "resources": {GPU: 1},
        "env": {"CUDA_VISIBLE_DEVICES": gpu, "OMP_NUM_THREADS": str(size.torch_threads)}}}
        for gpu in size.gpus}


@contextmanager
def open_client(scheduler: str | None = None, size: LocalSize | None = None,
                dashboard_address: str = ":8787") -> Iterator[Any]:
    """A `distributed.Client` of the cluster at `scheduler` (an address such as tcp://host:8786,
    or a scheduler file), or of a local cluster of `size` started for the block and closed after."""
    from distributed import Client
    with ExitStack() as stack:
        if scheduler:
            options = {"scheduler_file": scheduler} if os.path.isfile(scheduler) else {"address": scheduler}
            try:
                client = stack.enter_context(Client(**options, timeout=CONNECT_TIMEOUT))
            except (OSError, TimeoutError, ValueError) as exc:
                raise MisrError(f"--scheduler {scheduler}: no Dask scheduler answers there "
                                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        else:
            cluster = stack.enter_context(_local_cluster(size or machine_size("auto"), dashboard_address))
            client = stack.enter_context(Client(cluster))
        yield client


def _local_cluster(size: LocalSize, dashboard_address: str) -> Any:
    if size.gpus:
        from distributed import Scheduler, SpecCluster
        return SpecCluster(workers=gpu_worker_specs(size), silence_logs=logging.ERROR,
                           scheduler={"cls": Scheduler, "options": {"dashboard_address": dashboard_address}})
    from distributed import LocalCluster
    return LocalCluster(n_workers=size.workers, threads_per_worker=1, processes=True,
                        memory_limit=size.memory_limit, dashboard_address=dashboard_address,
                        silence_logs=logging.ERROR)


def workers_of(client: Any) -> list[dict[str, Any]]:
    """What the scheduler knows of each worker (address, nthreads, resources, ...)."""
    import inspect
    info = client.scheduler_info
    everything = {"n_workers": -1} if "n_workers" in inspect.signature(info).parameters else {}
    return list(info(**everything)["workers"].values())


def wait_for_workers(client: Any, timeout: float = WORKERS_TIMEOUT) -> None:
    """Wait until the cluster has a worker (a SLURM job may still be queued), or a MisrError."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise MisrError(f"{client.scheduler.address}: no Dask worker joined in {timeout:.0f} s") from None
