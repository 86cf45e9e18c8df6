"""Sizing the embedded cluster: one worker per GPU pinned to it (GPU=1 declared), else CPU
workers sharing the cores; and the options' bounds."""

from __future__ import annotations

import pytest

from misr_engine.batch.cluster import GPU, gpu_worker_specs, local_size, visible_gpus
from misr_engine.errors import MisrError

GIB = 2 ** 30


def test_cpu_workers_share_the_cores_as_memory_allows():
    assert local_size(16, 64 * GIB) == local_size(16, 64 * GIB, workers=8) and local_size(16, 64 * GIB).workers == 8
    assert local_size(16, 64 * GIB).torch_threads == 2
    assert local_size(16, 6 * GIB).workers == 2  # 3 GiB a worker
    assert local_size(2, 64 * GIB).workers == 1 and local_size(2, 64 * GIB).torch_threads == 2
    assert (local_size(2, 8 * GIB, workers=2).workers, local_size(2, 8 * GIB, workers=2).torch_threads) == (2, 1)
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
