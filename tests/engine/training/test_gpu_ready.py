"""Ready for a lent GPU: the GPU training config (the paper-sized trunk, time-boxed) and the
`make gpu-check` script both run here on the CPU for a couple of steps (no GPU in CI)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from misr_engine.models.weights import read_metadata
from misr_engine.training.run import load_config, train_from_config

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_the_gpu_config_trains_the_paper_sized_trunk_for_two_steps_on_the_cpu(tiny_dataset, tmp_path):
    config = load_config(str(REPO / "configs" / "piunet_s2_gpu.json"))
    assert (config.model_config["n_tefa"], config.model_config["n_feat"]) == (16, 42)  # the paper's trunk
    assert 0 < config.max_seconds <= 8 * 60
    small = replace(config, train_data=str(tiny_dataset[0]), val_data=str(tiny_dataset[1]), out_dir=str(tmp_path),
                    steps=2, batch_size=2, patch_lr=16, t_min=2, t_max=6, val_every=2, l1_warmup_steps=1,
                    eu_warmup_steps=0, threads=1)
    weights = train_from_config(small, log=lambda line: None)
    assert json.loads(read_metadata(weights)["config"])["n_tefa"] == 16


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
def test_gpu_check_runs_quick_on_the_cpu(tiny_dataset, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--quick", "--output",
                             str(tmp_path), "--val", str(tiny_dataset[1])],
                            capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["machine"]["torch"]
    assert "fp32" in report["precision"]["cpsnr_db"], report["precision"]
    assert report["full_tile"]["sr_rows"] == 3 * 96 and report["full_tile"]["seconds"] > 0, report["full_tile"]
    assert isinstance(report["scenes"], list)
