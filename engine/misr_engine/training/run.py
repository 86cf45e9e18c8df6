"""`misr train --config FILE`: the JSON config says what is trained (a super-resolution network,
supervised, or self-supervised from LR stacks only with "objective": "self_supervised", or with
"model": "kernel_prior" the blur-kernel prior); this reads it and runs the right trainer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from ..errors import MisrError
from .kernel_prior import KernelPriorTrainConfig, train_kernel_prior
from .self_supervised import SELF_SUPERVISED, SelfSupervisedConfig, train_self_supervised
from .trainer import TrainConfig, train

KERNEL_PRIOR = "kernel_prior"


AnyConfig = TrainConfig | SelfSupervisedConfig | KernelPriorTrainConfig


def load_config(path: str) -> AnyConfig:
    """The training config in `path`, or a one-line MisrError saying what is wrong with it."""
    if not os.path.isfile(path):
        raise MisrError(f"{path}: config file not found")
    try:
        fields = json.loads(Path(path).read_text())
        if fields.get("model") == KERNEL_PRIOR:
            return KernelPriorTrainConfig.from_file(path)
        objective = fields.get("objective", "supervised")
        if objective not in ("supervised", SELF_SUPERVISED):
            raise ValueError(f"objective {objective!r}: supervised or {SELF_SUPERVISED}")
        return (SelfSupervisedConfig if objective == SELF_SUPERVISED else TrainConfig).from_file(path)
    except (ValueError, TypeError, AttributeError) as exc:
        raise MisrError(f"{path}: not a valid training config ({exc})") from None


def train_from_config(config: AnyConfig, log: Callable[[str], None],
                      on_step: Callable[[int, float], None] | None = None) -> Path:
    """Train (or resume) what `config` describes; returns the weights' path."""
    trainer = (train_kernel_prior if isinstance(config, KernelPriorTrainConfig) else
               train_self_supervised if isinstance(config, SelfSupervisedConfig) else train)
    return trainer(config, log=log, on_step=on_step)
