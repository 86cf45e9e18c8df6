"""Ready for a lent GPU: the GPU training config (the paper-sized trunk, time-boxed) and the
`make gpu-check` script both run here on the CPU for a couple of steps (no GPU in CI), as they run
on the GPU machine's image: in a process where GDAL (osgeo) and Dask cannot be imported, since that
image has neither (/work/.library/device/KINDS.md's package list; the data travel as arrays,
scripts/pack_for_device.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from misr_engine.models.weights import read_metadata
from misr_engine.training.run import load_config, train_from_config

REPO = Path(__file__).resolve().parents[3]
ABSENT_ON_THE_DEVICE = ("osgeo", "dask", "distributed")
"""Top-level packages the GPU machine's image lacks."""

BLOCKER = f"""import importlib.abc, sys

class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT_ON_THE_DEVICE!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent from the GPU machine's image)")
        return None

sys.meta_path.insert(0, _Absent())
"""


def run_as_on_the_device(args: list[str], folder: Path) -> subprocess.CompletedProcess:
    """`python args` from the repository, in a process that cannot import ABSENT_ON_THE_DEVICE (a
    sitecustomize in `folder`, first on its path)."""
    (folder / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO / "engine")]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=900, cwd=REPO, env=env,
                          check=False)


def test_the_device_blocker_really_blocks_gdal(tmp_path):
    result = run_as_on_the_device(["-c", "import osgeo"], tmp_path)
    assert result.returncode != 0 and "absent from the GPU machine's image" in result.stderr


@pytest.mark.slow
def test_the_gpu_config_trains_the_paper_sized_trunk_for_two_steps_without_gdal(tiny_dataset, tmp_path):
    config = load_config(str(REPO / "configs" / "piunet_s2_gpu.json"))
    assert (config.model_config["n_tefa"], config.model_config["n_feat"]) == (16, 42)  # the paper's trunk
    assert 0 < config.max_seconds <= 8 * 60
    small = {**json.loads((REPO / "configs" / "piunet_s2_gpu.json").read_text()),
             "train_data": str(tiny_dataset[0]), "val_data": str(tiny_dataset[1]), "out_dir": str(tmp_path / "run"),
             "steps": 2, "batch_size": 2, "patch_lr": 16, "t_min": 2, "t_max": 6, "val_every": 2,
             "l1_warmup_steps": 1, "eu_warmup_steps": 0, "threads": 1}
    (tmp_path / "config.json").write_text(json.dumps(small))
    result = run_as_on_the_device(["-m", "misr_engine.cli", "train", "--config", str(tmp_path / "config.json"),
                                   "--progress", "none"], tmp_path)  # as `make gpu-train` runs it
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(read_metadata(tmp_path / "run" / "piunet.safetensors")["config"])["n_tefa"] == 16


@pytest.mark.slow
def test_a_time_box_stops_training_with_weights(tiny_dataset, tmp_path):
    config = replace(load_config(str(REPO / "configs" / "piunet_s2_gpu.json")), train_data=str(tiny_dataset[0]),
                     val_data=str(tiny_dataset[1]), out_dir=str(tmp_path), batch_size=2, patch_lr=16, t_min=2,
                     t_max=6, val_every=1000, threads=1, max_seconds=1.0,
                     model_config={"n_feat": 8, "n_tefa": 1, "bottleneck": 2})
    weights = train_from_config(config, log=lambda line: None)
    steps = [line for line in (tmp_path / "log.csv").read_text().splitlines() if line.strip()]
    assert weights.is_file() and len(steps) == 1 and int(steps[0].split(",")[0]) < config.steps


@pytest.mark.slow
def test_gpu_check_runs_quick_on_the_cpu_without_gdal(tiny_dataset, tmp_path):
    result = run_as_on_the_device([str(REPO / "scripts" / "gpu_check.py"), "--quick", "--output", str(tmp_path),
                                   "--val", str(tiny_dataset[1])], tmp_path)  # as `make gpu-check` runs it
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["machine"]["torch"]
    assert "fp32" in report["precision"]["cpsnr_db"], report["precision"]
    assert report["full_tile"]["sr_rows"] == 3 * 96 and report["full_tile"]["seconds"] > 0, report["full_tile"]
    assert [(r["device"], "error" in r) for r in report["scenes"]] == [("cpu", False)], report["scenes"]
    assert report["scenes"][0]["ms_median"] > 0  # bench's scene case ran in its own process, without GDAL too
