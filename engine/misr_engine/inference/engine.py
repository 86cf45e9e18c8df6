"""Choosing a backend: a network loaded for torch or ONNX Runtime on a device, with what the
outputs' tags and the progress events say about it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import SCALE
from ..errors import MisrError
from ..models.weights import load_model
from .backends import OnnxRunner, Runner, TorchRunner, check_precision, resolve_device
from .onnx_export import cached_onnx

@dataclass
class Engine:
    """A runner with what the outputs' tags and the progress events say about it."""

    runner: Runner
    backend: str
    model: str
    weights: Path  # the safetensors file (for ONNX: the one it was exported from, by name)
    weights_sha256: str  # of the safetensors weights (for ONNX: recorded at export)
    device: str  # torch device, or "cpu"/"cuda" for ONNX Runtime
    provider: str  # what really ran: torch device or ONNX Runtime execution provider
    precision: str
    onnx: Path | None = None  # the ONNX model that ran, for the onnx backend


def open_engine(backend: str, model_name: str, weights: str | Path | None, device: str = "auto",
                precision: str = "fp32") -> Engine:
    """Load `model_name` for `backend` ('torch' or 'onnx') on `device` ('auto', 'cpu', 'cuda[:N]')."""
    if backend == "torch":
        if weights and str(weights).endswith(".onnx"):
            raise MisrError(f"{weights}: an ONNX model needs --backend onnx")
        torch_device = resolve_device(device)
        check_precision(precision, torch_device.type == "cuda", "torch")
        loaded = load_model(model_name, weights, torch_device)
        runner = TorchRunner(loaded.model, torch_device, precision)
        return Engine(runner, "torch", loaded.name, loaded.path, loaded.sha256, str(torch_device),
                      runner.provider, precision)
    if backend != "onnx":
        raise MisrError(f"--backend {backend}: use torch or onnx")
    check_precision(precision, True, "onnx")
    if weights and str(weights).endswith(".onnx"):
        path = Path(weights)
        if not path.is_file():
            raise MisrError(f"{path}: ONNX model not found")
    else:
        path = cached_onnx(model_name, weights)
    runner = OnnxRunner(path, device)
    metadata = runner.metadata
    if metadata.get("model") != model_name:
        raise MisrError(f"{path}: ONNX model is for model {metadata.get('model')!r}, not {model_name!r}")
    if metadata.get("scale") != str(SCALE):
        raise MisrError(f"{path}: ONNX model upsamples x{metadata.get('scale')}, not x{SCALE}")
    on_gpu = runner.provider == "CUDAExecutionProvider"
    return Engine(runner, "onnx", model_name, Path(metadata.get("weights", path.name)),
                  metadata.get("weights_sha256", ""), "cuda" if on_gpu else "cpu", runner.provider,
                  "fp32", onnx=path)
