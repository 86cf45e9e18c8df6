"""`misr train --config FILE`: the JSON config says what is trained (a super-resolution network,
supervised, or self-supervised from LR stacks only with "objective": "self_supervised", or with
"model": "kernel_prior" the blur-kernel prior); this reads it and runs the right trainer."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import MisrError
from ..models.config_bounds import checked_config
from ..models.kernel_prior import KernelPriorConfig
from ..models.registry import model_spec
from .kernel_prior import KernelPriorTrainConfig, train_kernel_prior
from .self_supervised import (
    SELF_SUPERVISED,
    SelfSupervisedConfig,
    train_self_supervised,
)
from .trainer import CHECKPOINT, TrainConfig, train

KERNEL_PRIOR = "kernel_prior"


AnyConfig = TrainConfig | SelfSupervisedConfig | KernelPriorTrainConfig


DATA_FILES = ("train_data", "val_data", "init_weights", "kernel_prior")
"""Config fields naming input files (those a config has and sets must exist)."""


def load_config(path: str) -> AnyConfig:
    """The training config in `path`, or a one-line MisrError saying what is wrong with it: not
    JSON, an unknown key, a missing one, a wrong type, a value out of bounds (each config's
    ``BOUNDS``), a model_config the model does not take. Its input files are checked when
    training starts (``train_from_config``)."""
    if not os.path.isfile(path):
        raise MisrError(f"{path}: config file not found")
    try:
        fields = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise MisrError(f"{path}: not a valid training config (not JSON: {exc})") from None
    if not isinstance(fields, dict):
        raise MisrError(f"{path}: not a valid training config (not a JSON object)")
    objective = fields.get("objective", "supervised")
    if objective not in ("supervised", SELF_SUPERVISED):
        raise MisrError(f"{path}: training config objective={objective!r}: must be supervised or {SELF_SUPERVISED}")
    if objective == "supervised":
        fields.pop("objective", None)
    config_class = (KernelPriorTrainConfig if fields.get("model") == KERNEL_PRIOR else
                    SelfSupervisedConfig if objective == SELF_SUPERVISED else TrainConfig)
    config = checked_config(config_class, fields, path, kind="training config")
    network_config = KernelPriorConfig if config_class is KernelPriorTrainConfig else model_spec(config.model).config_class()
    checked_config(network_config, config.model_config, path, kind="model_config")
    return config


def train_from_config(config: AnyConfig, log: Callable[[str], None],
                      on_step: Callable[[int, float], None] | None = None) -> Path:
    """Train (or resume) what `config` describes; returns the weights' path. An input file that
    is not there is a one-line MisrError before anything is written."""
    resuming = (Path(config.out_dir) / CHECKPOINT).is_file()  # a resumed run does not read its init_weights
    for name in DATA_FILES:
        file = getattr(config, name, None)
        if file and not os.path.isfile(file) and not (resuming and name == "init_weights"):
            raise MisrError(f"{file}: file not found (the training config's {name})")
    trainer = (train_kernel_prior if isinstance(config, KernelPriorTrainConfig) else
               train_self_supervised if isinstance(config, SelfSupervisedConfig) else train)
    return trainer(config, log=log, on_step=on_step)
