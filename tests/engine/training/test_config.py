"""A training config is a user's file: `misr train` checks every field's type and bounds, the
model_config against the model's own bounds, and the input files, before anything is written,
and says what is wrong in one line naming the file and the key."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from misr_engine.errors import MisrError
from misr_engine.models.config_bounds import bounds_of, unbounded_fields
from misr_engine.training.kernel_prior import KernelPriorTrainConfig
from misr_engine.training.run import load_config, train_from_config
from misr_engine.training.self_supervised import SelfSupervisedConfig
from misr_engine.training.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[3]
CONFIG_CLASSES = (TrainConfig, SelfSupervisedConfig, KernelPriorTrainConfig)


@pytest.mark.parametrize("config_class", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_every_numeric_training_field_has_a_bound(config_class):
    assert unbounded_fields(config_class) == []
    assert set(bounds_of(config_class)) <= set(config_class.__dataclass_fields__)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.json")), ids=lambda p: p.name)
def test_every_shipped_config_passes_the_check(path):
    assert isinstance(load_config(str(path)), CONFIG_CLASSES)


SUPERVISED = {"train_data": "t.npz", "val_data": "v.npz", "out_dir": "run"}


@pytest.mark.parametrize("fields,problem", [
    ({**SUPERVISED, "steps": "ten"}, "training config steps='ten': must be an integer"),
    ({**SUPERVISED, "steps": 2.5}, "training config steps=2.5: must be an integer"),
    ({**SUPERVISED, "steps": 0}, "training config steps=0: must be between 1 and"),
    ({**SUPERVISED, "learning_rate": "1e-4"}, "training config learning_rate='1e-4': must be a number"),
    ({**SUPERVISED, "loss": "l3"}, "training config loss='l3': must be one of l1, mse, nll, udl"),
    ({**SUPERVISED, "model": "srcnn"}, "training config model='srcnn': must be one of piunet"),
    ({**SUPERVISED, "init_skip": "to_mean"}, "training config init_skip='to_mean': must be a list of str"),
    ({**SUPERVISED, "init_weights": 3}, "training config init_weights=3: must be a text"),
    ({**SUPERVISED, "t_min": 9, "t_max": 3}, "t_min 9 is above t_max 3"),
    ({**SUPERVISED, "model_config": {"n_feat": "32"}}, "model_config n_feat='32': must be an integer"),
    ({**SUPERVISED, "model_config": {"n_layers": 3}}, "unknown model_config key 'n_layers'"),
    ({**SUPERVISED, "lr": 1e-4}, "unknown training config key 'lr'"),
    ({"train_data": "t.npz", "out_dir": "run"}, "training config lacks val_data"),
    ({**SUPERVISED, "objective": "self_supervised", "noise": [0.1, 0.0]},
     "training config noise=.0.1, 0.0.: must be .low, high. with low <= high"),
    ({**SUPERVISED, "objective": "magic"}, "objective='magic': must be supervised or self_supervised"),
    ({"model": "kernel_prior", "out_dir": "run", "sigma_range": [0.4, 99]}, "sigma_range=.0.4, 99.: must be between"),
    ({"model": "kernel_prior", "out_dir": "run", "mix": {"gauss": 1}}, "mix .'gauss': 1.: weights >= 0"),
    ({"model": "kernel_prior", "out_dir": "run", "model_config": {"kernel_size": 14}},
     "model_config kernel_size=14: must be 0 or odd"),
    ([1, 2], "not a valid training config .not a JSON object."),
])
def test_a_wrong_field_is_one_line_naming_the_file_and_the_key(tmp_path, fields, problem):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(fields))
    with pytest.raises(MisrError, match=f"^{path}: .*{problem}"):
        load_config(str(path))


def test_text_that_is_not_json_is_one_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"train_data":')
    with pytest.raises(MisrError, match=f"^{path}: not a valid training config .not JSON"):
        load_config(str(path))


def test_a_missing_or_unreadable_data_file_stops_before_the_run_folder_is_made(tmp_path, tiny_dataset):
    config = TrainConfig(train_data=str(tmp_path / "absent.npz"), val_data=str(tiny_dataset[1]),
                         out_dir=str(tmp_path / "run"), steps=1)
    with pytest.raises(MisrError, match=f"^{tmp_path / 'absent.npz'}: file not found .the training config's train_data."):
        train_from_config(config, log=lambda line: None)
    not_npz = tmp_path / "notes.npz"
    not_npz.write_text("not an archive")
    config.train_data = str(not_npz)
    with pytest.raises(MisrError, match=f"^{not_npz}: not a samples file made by `misr make-dataset`"):
        train_from_config(config, log=lambda line: None)
    assert not (tmp_path / "run").exists()


def test_a_samples_file_without_hr_is_refused_for_supervised_training(tmp_path, tiny_dataset):
    import numpy as np
    with np.load(tiny_dataset[0]) as data:
        np.savez(tmp_path / "lr_only.npz", **{key: data[key] for key in data.files if key != "hr"})
    config = TrainConfig(train_data=str(tmp_path / "lr_only.npz"), val_data=str(tiny_dataset[1]),
                         out_dir=str(tmp_path / "run"), steps=1)
    with pytest.raises(MisrError, match=r"lr_only.npz: not a samples file made by `misr make-dataset` \(no hr\)"):
        train_from_config(config, log=lambda line: None)
    assert not (tmp_path / "run").exists()


def test_misr_train_says_it_in_one_line_on_the_command_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**SUPERVISED, "batch_size": "8"}))
    result = subprocess.run([sys.executable, "-m", "misr_engine.cli", "train", "--config", str(path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"misr: error: {path}: training config batch_size='8': must be an integer"]
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_does_not_need_its_init_weights_any_more(tmp_path, tiny_dataset):
    config = TrainConfig(train_data=str(tiny_dataset[0]), val_data=str(tiny_dataset[1]), out_dir=str(tmp_path / "run"),
                         steps=1, batch_size=2, patch_lr=16, t_min=2, t_max=6, val_every=1, threads=1,
                         model_config={"n_feat": 8, "n_tefa": 1, "bottleneck": 2},
                         init_weights=str(tmp_path / "stage1.safetensors"))
    with pytest.raises(MisrError, match="stage1.safetensors: file not found .the training config's init_weights."):
        train_from_config(config, log=lambda line: None)
    train_from_config(replace(config, init_weights=None), log=lambda line: None)  # leaves a checkpoint
    config.steps = 2
    assert train_from_config(config, log=lambda line: None).is_file()  # resumes without the stage-1 weights
