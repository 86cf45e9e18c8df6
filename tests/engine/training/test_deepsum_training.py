"""DeepSUM's training: the paper's loss (the cMSE of the cPSNR), RegNet's cross-entropy added by
the trainer, the shipped configs run, and the uncertainty calibration fitted on validation stacks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from misr_engine.datasets.samples import load_samples
from misr_engine.evaluation.metrics import cpsnr
from misr_engine.models.deepsum import DEFAULT_CALIBRATION, DeepSUMConfig
from misr_engine.models.weights import load_model, read_metadata
from misr_engine.training.deepsum_calibration import calibrate_deepsum, calibration_samples
from misr_engine.training.losses import LOSSES, compensated_loss
from misr_engine.training.trainer import TrainConfig, train
from tests.rasters import SAMPLE

CONFIGS = SAMPLE.parents[3] / "configs"


def test_mse_loss_compensated_is_the_cmse_of_the_cpsnr():
    rng = np.random.default_rng(1)
    hr = rng.standard_normal((30, 30))
    sr = np.roll(hr, (1, -2), axis=(0, 1)) + 0.3 + 0.05 * rng.standard_normal((30, 30))
    tensor = lambda a: torch.tensor(a[None, None], dtype=torch.float64)  # noqa: E731
    loss = compensated_loss(LOSSES["mse"], tensor(sr), tensor(sr) * 0, tensor(hr), tensor(hr) * 0 + 1)
    assert abs(-10 * np.log10(loss.item()) - cpsnr(sr, hr)) < 1e-6


def small_run(config_name: str, tiny_dataset, out_dir, **changes) -> TrainConfig:
    """A shipped DeepSUM config on the tiny dataset, two steps."""
    config = json.loads((CONFIGS / config_name).read_text())
    train_path, val_path = tiny_dataset
    config.update({"train_data": str(train_path), "val_data": str(val_path), "out_dir": str(out_dir),
                   "steps": 2, "val_every": 2, "batch_size": 2, "patch_lr": 12, "t_min": 3, "t_max": 6,
                   "init_weights": None, "max_seconds": 0, "threads": 1, **changes})
    return TrainConfig(**config)


@pytest.mark.parametrize("name", ["deepsum_s2_cpu_regnet.json", "deepsum_s2_cpu.json", "deepsum_s2_gpu.json"])
def test_deepsum_configs_train_two_steps_and_keep_the_best_weights(tiny_dataset, tmp_path, name):
    config = small_run(name, tiny_dataset, tmp_path / "run")
    weights = train(config, log=lambda line: None)
    model = load_model("deepsum", weights).model
    assert model.config == DeepSUMConfig(**config.model_config)
    assert (tmp_path / "run" / "log.csv").read_text().startswith("2,mse,")
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_the_trainer_adds_regnets_cross_entropy(tiny_dataset, tmp_path):
    """The same step with RegNet's weight 0 and 1000: the loss logged differs by the weighted
    cross-entropy (about 1000 x 2 to 4 nats here), so the trainer does add the network's term."""
    losses = []
    for weight in (0.0, 1000.0):
        config = small_run("deepsum_s2_cpu.json", tiny_dataset, tmp_path / f"run{weight}", steps=1, val_every=1,
                           model_config={**json.loads((CONFIGS / "deepsum_s2_cpu.json").read_text())["model_config"],
                                         "regnet_weight": weight})
        train(config, log=lambda line: None)
        losses.append(float((tmp_path / f"run{weight}" / "log.csv").read_text().split(",")[2]))
    assert losses[1] - losses[0] > 1000.0


def test_calibration_on_validation_stacks_makes_the_scale_the_mean_absolute_error(tiny_dataset, tmp_path):
    config = small_run("deepsum_s2_cpu.json", tiny_dataset, tmp_path / "run")
    weights = train(config, log=lambda line: None)
    calibrated = tmp_path / "calibrated.safetensors"
    fitted = calibrate_deepsum(weights, tiny_dataset[1], calibrated)
    model = load_model("deepsum", calibrated).model
    assert model.calibration.tolist() != list(DEFAULT_CALIBRATION)
    assert json.loads(read_metadata(calibrated)["calibration"])["pixels"] == fitted["pixels"] > 1000
    # on the stacks it was fitted on, the mean predicted scale matches the mean |error| (a Laplace
    # fit's first-order condition: mean |e| exp(-s) = 1)
    cues, errors = calibration_samples(model, load_samples(tiny_dataset[1]))
    scale = torch.exp(cues.double() @ model.calibration.double())
    assert abs(float((errors / scale).mean()) - 1.0) < 0.05
