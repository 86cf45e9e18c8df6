"""The networks, by name. Each is one file whose blocks mirror its paper's figure."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .piunet import PIUnet, PIUnetConfig

MODELS: dict[str, tuple[Callable[..., nn.Module], type]] = {
    "piunet": (PIUnet, PIUnetConfig),
}


def build_model(name: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate the network `name` with a config dict (layer sizes); defaults otherwise."""
    model_class, config_class = MODELS[name]
    return model_class(config_class(**(config or {})))
