"""`misr train --config FILE`: the JSON config says what is trained (a super-resolution network,
or with "model": "kernel_prior" the blur-kernel prior); this reads it and runs the right trainer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from ..errors import MisrError
from .kernel_prior import KernelPriorTrainConfig, train_kernel_prior
from .trainer import TrainConfig, train

KERNEL_PRIOR = "kernel_prior"


def load_config(path: str) -> TrainConfig | KernelPriorTrainConfig:
    """The training config in `path`, or a one-line MisrError saying what is wrong with it."""
    if not os.path.isfile(path):
        raise MisrError(f"{path}: config file not found")
    try:
        model = json.loads(Path(path).read_text()).get("model")
        config_class = KernelPriorTrainConfig if model == KERNEL_PRIOR else TrainConfig
        return config_class.from_file(path)
    except (ValueError, TypeError, AttributeError) as exc:
        raise MisrError(f"{path}: not a valid training config ({exc})") from None


def train_from_config(config: TrainConfig | KernelPriorTrainConfig, log: Callable[[str], None],
                      on_step: Callable[[int, float], None] | None = None) -> Path:
    """Train (or resume) what `config` describes; returns the weights' path."""
    trainer = train_kernel_prior if isinstance(config, KernelPriorTrainConfig) else train
    return trainer(config, log=log, on_step=on_step)
