"""Model weights: safetensors files (no code execution on load) with a JSON header."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .. import __version__
from ..errors import MisrError
from ..files import check_input_file
from .config_bounds import checked_config
from .registry import model_spec


@dataclass(frozen=True)
class LoadedModel:
    """A network ready for inference, with where it came from."""

    model: nn.Module
    name: str
    path: Path
    sha256: str
    metadata: dict[str, Any]


OWN_HEADER_KEYS = ("model", "config", "engine_version")
"""The header entries `save_weights` writes from the model and the engine themselves."""


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, Any]) -> None:
    """Write the model's state and a JSON metadata header (model name, config, training facts)."""
    header = dict(zip(OWN_HEADER_KEYS, (model.name, json.dumps(model.config.to_dict()), __version__)))
    header.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=header)


def carried_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """A weights file's metadata without the entries `save_weights` writes itself
    (`OWN_HEADER_KEYS`): what weights derived from that file carry over."""
    return {k: v for k, v in metadata.items() if k not in OWN_HEADER_KEYS}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_header(path: Path) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """The metadata and the tensor table (name -> dtype, shape, data_offsets) of a safetensors
    file, read from its JSON header only; a MisrError if it is not one, or if its data do not
    match the header (a truncated file)."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size < 100_000_000:
                raise ValueError("bad header length; not a safetensors file")
            header = json.loads(handle.read(size))
        if not isinstance(header, dict):
            raise ValueError("malformed safetensors header")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError("malformed safetensors header")
        if not all(isinstance(t, dict) and isinstance(t.get("shape"), list) and isinstance(t.get("data_offsets"), list)
                   and len(t["data_offsets"]) == 2 for t in header.values()):
            raise ValueError("malformed safetensors tensor table")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise MisrError(f"{path}: not a valid weights file ({str(exc).splitlines()[0]})") from None
    end = 8 + size + max((int(t["data_offsets"][1]) for t in header.values()), default=0)
    actual = os.path.getsize(path)
    if actual != end:
        raise MisrError(f"{path}: truncated or damaged weights file ({actual} bytes; its header describes {end})")
    return metadata, header


def read_metadata(path: Path) -> dict[str, str]:
    """The JSON metadata of a safetensors file, or a MisrError if it is not one."""
    return read_header(path)[0]


def check_weights(model_name: str, weights: str | Path | None = None) -> tuple[Path, dict[str, str]]:
    """The weights file for `model_name` (default: the shipped one) and its metadata, checked
    cheaply (a regular file with a safetensors header, for this model) without loading tensors."""
    path = Path(weights) if weights else model_spec(model_name).default_weights
    check_input_file(path, "weights file")  # before opening it: a FIFO would block
    metadata = read_metadata(path)
    if metadata.get("model") != model_name:
        raise MisrError(f"{path}: weights are for model {metadata.get('model')!r}, not {model_name!r}")
    return path, metadata


@dataclass(frozen=True)
class ModelPlan:
    """A weights file checked without loading a tensor or building the network: its config within
    the model's bounds, every tensor the network needs there with the right shape, no other."""

    name: str
    path: Path
    metadata: dict[str, str]
    config: Any  # the model's config dataclass
    parameters: int  # numbers in the network's state (parameters and buffers)

    @property
    def parameter_bytes(self) -> int:
        """The network's state in float32 bytes."""
        return 4 * self.parameters


def plan_model(model_name: str, weights: str | Path | None = None) -> ModelPlan:
    """Check a weights file for `model_name` against its config bounds and the network's state,
    built on torch's 'meta' device (shapes only, nothing allocated): one-line MisrErrors naming
    the config key or the tensor (missing, unexpected, wrong shape or type)."""
    path, metadata = check_weights(model_name, weights)
    _, tensors = read_header(path)
    spec = model_spec(model_name)
    config = checked_config(spec.config_class(), metadata.get("config", "{}"), str(path))
    try:
        with torch.device("meta"):
            skeleton = spec.build(config)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise MisrError(f"{path}: invalid model config ({str(exc).splitlines()[0]})") from None
    expected = skeleton.state_dict()
    problems = [f"missing tensor {name!r}" for name in expected if name not in tensors]
    problems += [f"unexpected tensor {name!r}" for name in tensors if name not in expected]
    for name, tensor in expected.items():
        if name in tensors:
            shape, dtype = [int(n) for n in tensors[name]["shape"]], str(tensors[name].get("dtype"))
            if shape != list(tensor.shape):
                problems.append(f"tensor {name!r} has shape {shape}, the model needs {list(tensor.shape)}")
            elif dtype not in (FLOAT_DTYPES if tensor.is_floating_point() else INTEGER_DTYPES):
                problems.append(f"tensor {name!r} has type {dtype}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MisrError(f"{path}: weights do not fit model {model_name!r}: {problems[0]}{more}")
    return ModelPlan(model_name, path, metadata, config, sum(t.numel() for t in expected.values()))


FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
INTEGER_DTYPES = ("I64", "I32", "I16", "I8", "U8")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (checked to be a safetensors file first)."""
    read_metadata(Path(path))
    try:
        return load_file(str(path))
    except SafetensorError as exc:
        raise MisrError(f"{path}: not a valid weights file ({str(exc).splitlines()[0]})") from None


def load_model(model_name: str, weights: str | Path | None = None,
               device: torch.device | str = "cpu") -> LoadedModel:
    """Build `model_name` and load its weights (default: the shipped ones), in eval mode.

    The file is checked first (`plan_model`: config bounds, every tensor by name and shape), its
    tensors must be finite, and every one is loaded (strict)."""
    plan = plan_model(model_name, weights)
    path = plan.path
    state = read_state_dict(path)
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise MisrError(f"{path}: tensor {name!r} has {bad} non-finite value(s) (NaN or Inf): damaged weights")
    try:
        model = model_spec(model_name).build(plan.config)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise MisrError(f"{path}: weights do not fit model {model_name!r} ({str(exc).splitlines()[0]})") from None
    model.eval().to(device)
    return LoadedModel(model, model_name, path, file_sha256(path), plan.metadata)
