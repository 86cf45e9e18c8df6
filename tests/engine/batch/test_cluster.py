"""Sizing the embedded cluster: one worker per GPU pinned to it (GPU=1 declared), else CPU
workers sharing the cores; and the options' bounds."""

from __future__ import annotations

import pytest

from misr_engine.batch.cluster import GPU, gpu_worker_specs, local_size, visible_gpus
from misr_engine.errors import MisrError

GIB = 2 ** 30


def test_cpu_workers_share_the_cores_as_memory_allows():
    assert local_size(16, 64 * GIB) == local_size(16, 64 * GIB, workers=16)
    assert (local_size(16, 64 * GIB).workers, local_size(16, 64 * GIB).torch_threads) == (16, 1)
    assert (local_size(16, 6 * GIB).workers, local_size(16, 6 * GIB).torch_threads) == (2, 8)  # 3 GiB a worker
    assert local_size(16, 6 * GIB).memory_limit == 3 * GIB
    assert (local_size(2, 64 * GIB, workers=1).workers, local_size(2, 64 * GIB, workers=1).torch_threads) == (1, 2)
    assert local_size(8, 8 * GIB, workers=2, torch_threads=1).torch_threads == 1


def test_one_worker_per_gpu_each_sees_only_its_own_and_declares_it():
    size = local_size(16, 64 * GIB, ("2", "5"))
    assert (size.workers, size.torch_threads, size.gpus) == (2, 8, ("2", "5"))
    specs = gpu_worker_specs(size)
    assert [spec["options"]["env"]["CUDA_VISIBLE_DEVICES"] for spec in specs.values()] == ["2", "5"]
    assert all(spec["options"]["resources"] == {GPU: 1} and spec["options"]["nthreads"] == 1
               for spec in specs.values())
    assert local_size(16, 64 * GIB, ("0", "1", "2"), workers=1).gpus == ("0",)


def test_bad_sizes_are_one_line_and_cpu_means_no_gpu():
    with pytest.raises(MisrError, match=r"^--workers 0: must be at least 1$"):
        local_size(4, 8 * GIB, workers=0)
    with pytest.raises(MisrError, match=r"^--torch-threads 0: must be at least 1$"):
        local_size(4, 8 * GIB, torch_threads=0)
    assert visible_gpus("cpu") == ()


def _visible_devices() -> str:
    import os
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")


@pytest.mark.slow
def test_the_gpu_layout_starts_one_pinned_worker_per_gpu_declaring_it():
    """The embedded GPU cluster's layout, started on any machine (no GPU needed to check it):
    each worker process sees only its GPU and declares GPU=1 to the scheduler."""
    from misr_engine.batch.cluster import LocalSize, open_client, workers_of
    with open_client(size=LocalSize(2, 1, 2 ** 30, ("0", "1")), dashboard_address=":0") as client:
        client.wait_for_workers(2, timeout=120)
        assert sorted(client.run(_visible_devices).values()) == ["0", "1"]
        assert [worker["resources"] for worker in workers_of(client)] == [{GPU: 1}, {GPU: 1}]
