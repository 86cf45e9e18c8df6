"""The networks the engine offers, by name: how to build each, its label, its shipped weights and
model card, and what it can do (the plugin and `misr models --json` read this). Importing it does
not import torch: a network's module is imported when it is built."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MisrError
from ..resources import weights_dir

if TYPE_CHECKING:
    from torch import nn

UNCERTAINTY = "uncertainty"  # a per-pixel expected absolute error beside the SR
ORDER_INVARIANT = "order-invariant"  # the result does not depend on the order of the frames
FINE_TUNABLE = "fine-tunable"  # test-time fine-tuning (--ttf-steps) works with it
ONNX = "onnx"  # exports to ONNX and runs in ONNX Runtime (--backend onnx)


@dataclass(frozen=True)
class WeightsOption:
    """A shipped weights file of a model: `name` (e.g. supervised, self-supervised), a label for
    people, and its file under the package's weights folder (its model card: the same stem, .md)."""

    name: str
    label: str
    file: str

    @property
    def path(self) -> Path:
        return weights_dir() / self.file

    @property
    def card(self) -> Path:
        return self.path.with_suffix(".md")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "weights": str(self.path),
                "card": str(self.card) if self.card.is_file() else None}


@dataclass(frozen=True)
class ModelSpec:
    """One network: its name on the command line, its label for people, its classes and abilities,
    and its shipped weights (the first are the default)."""

    name: str
    label: str
    module: str  # the network's module, under misr_engine.models
    network: str  # its nn.Module class
    config: str  # its config dataclass
    capabilities: frozenset[str]
    weights_options: tuple[WeightsOption, ...] = ()

    @property
    def shipped_weights(self) -> tuple[WeightsOption, ...]:
        """The weights options whose files are installed (the default first)."""
        options = self.weights_options or (WeightsOption("default", self.label, f"{self.name}.safetensors"),)
        return tuple(option for option in options if option.path.is_file())

    @property
    def default_weights(self) -> Path:
        options = self.weights_options or (WeightsOption("default", self.label, f"{self.name}.safetensors"),)
        return options[0].path

    @property
    def card(self) -> Path:
        return self.default_weights.with_suffix(".md")

    def config_class(self) -> type:
        """The network's config dataclass (with its `BOUNDS`: ``config_bounds``)."""
        return getattr(importlib.import_module(f"{__package__}.{self.module}"), self.config)

    def build(self, config: Any = None) -> nn.Module:
        """The network with a config (a dict of layer sizes, or the config dataclass); defaults otherwise."""
        module = importlib.import_module(f"{__package__}.{self.module}")
        if not isinstance(config, self.config_class()):
            config = self.config_class()(**(config or {}))
        return getattr(module, self.network)(config)

    def describe(self) -> dict[str, Any]:
        """What `misr models --json` says about it."""
        weights = self.default_weights
        return {"name": self.name, "label": self.label, "default": self.name == DEFAULT_MODEL,
                "weights": str(weights) if weights.is_file() else None,
                "card": str(self.card) if self.card.is_file() else None,
                "capabilities": sorted(self.capabilities),
                "weights_options": [option.describe() for option in self.shipped_weights]}


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("piunet", "PIUnet", "piunet", "PIUnet", "PIUnetConfig",
              frozenset({UNCERTAINTY, ORDER_INVARIANT, FINE_TUNABLE, ONNX}),
              (WeightsOption("supervised", "supervised (semi-simulated Sentinel-2 with HR)", "piunet.safetensors"),
               WeightsOption("self-supervised", "self-supervised (LR stacks only, no HR)", "piunet_ssl.safetensors"))),
    ModelSpec("deepsum", "DeepSUM", "deepsum", "DeepSUM", "DeepSUMConfig", frozenset({UNCERTAINTY, ONNX})),
)}
DEFAULT_MODEL = "piunet"


def model_spec(name: str) -> ModelSpec:
    """The model called `name`, or a one-line MisrError listing the available ones."""
    if name not in MODELS:
        raise MisrError(f"unknown model {name!r} (available: {', '.join(MODELS)})")
    return MODELS[name]


def build_model(name: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate the network `name` with a config dict (layer sizes); defaults otherwise."""
    return model_spec(name).build(config)
