"""Model weights: safetensors files (no code execution on load) with a JSON header."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .. import __version__
from ..errors import MisrError
from .registry import build_model, model_spec


@dataclass(frozen=True)
class LoadedModel:
    """A network ready for inference, with where it came from."""

    model: nn.Module
    name: str
    path: Path
    sha256: str
    metadata: dict[str, Any]


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, Any]) -> None:
    """Write the model's state and a JSON metadata header (model name, config, training facts)."""
    header = {"model": model.name, "config": json.dumps(model.config.to_dict()),
              "engine_version": __version__}
    header.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=header)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(path: Path) -> dict[str, str]:
    """The JSON header of a safetensors file, or a MisrError if it is not one."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size < 100_000_000:
                raise ValueError("bad header length; not a safetensors file")
            header = json.loads(handle.read(size))
        metadata = (header.get("__metadata__") or {}) if isinstance(header, dict) else None
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError("malformed safetensors header")
        return metadata
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise MisrError(f"{path}: not a valid weights file ({str(exc).splitlines()[0]})") from None


def check_weights(model_name: str, weights: str | Path | None = None) -> tuple[Path, dict[str, str]]:
    """The weights file for `model_name` (default: the shipped one) and its metadata, checked
    cheaply (it exists, has a safetensors header, is for this model) without loading tensors."""
    path = Path(weights) if weights else model_spec(model_name).default_weights
    if not path.is_file():
        raise MisrError(f"{path}: weights file not found")
    metadata = read_metadata(path)
    if metadata.get("model") != model_name:
        raise MisrError(f"{path}: weights are for model {metadata.get('model')!r}, not {model_name!r}")
    return path, metadata


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (checked to be a safetensors file first)."""
    read_metadata(Path(path))
    try:
        return load_file(str(path))
    except SafetensorError as exc:
        raise MisrError(f"{path}: not a valid weights file ({str(exc).splitlines()[0]})") from None


def load_model(model_name: str, weights: str | Path | None = None,
               device: torch.device | str = "cpu") -> LoadedModel:
    """Build `model_name` and load its weights (default: the shipped ones), in eval mode."""
    path, metadata = check_weights(model_name, weights)
    try:
        model = build_model(model_name, json.loads(metadata.get("config", "{}")))
        model.load_state_dict(load_file(str(path)))
    except (SafetensorError, RuntimeError, TypeError, ValueError) as exc:
        raise MisrError(f"{path}: weights do not fit model {model_name!r} ({str(exc).splitlines()[0]})") from None
    model.eval().to(device)
    return LoadedModel(model, model_name, path, file_sha256(path), metadata)
