"""Inference backends: the network as a function of a batch of equal tiles, on torch or ONNX Runtime.

A *runner* maps normalised frames and masks, numpy float32 (B, T, h, w), to the network's two
outputs stacked as (B, 2, 3h, 3w): the SR mean and the Laplace log-scale, in normalised units.
The tiled inference (`inference.py`) only sees runners, so both backends share one tiling loop.

* `TorchRunner`: the PyTorch model on CPU or CUDA; on CUDA optionally under autocast (fp16/bf16).
* `OnnxRunner`: an exported ONNX model in ONNX Runtime, CUDAExecutionProvider when the
  onnxruntime-gpu package provides it (and a GPU is wanted), CPUExecutionProvider otherwise.

`export_onnx` writes the ONNX model (dynamic batch, T and spatial axes; metadata in
`metadata_props`); `cached_onnx` exports on the fly into a cache keyed by the weights' SHA-256.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import SCALE, __version__
from .errors import MisrError

PRECISIONS = ("fp32", "fp16", "bf16")
ONNX_OPSET = 17
ONNX_INPUTS = ("frames", "masks", "phases")  # phases only for models with phase inputs
ONNX_OUTPUTS = ("mean", "log_scale")
DEFAULT_GPU_BATCH = 4
"""Tiles per forward pass on CUDA (a guess, not measured yet: out of memory halves it)."""


class TileOutOfMemory(Exception):
    """A backend ran out of (GPU) memory on a batch of tiles; the caller may retry smaller."""


class Runner(Protocol):
    backend: str  # "torch" or "onnx"
    provider: str  # where it really runs: "cpu", "cuda:0", "CPUExecutionProvider", ...
    default_batch: int

    def __call__(self, frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> np.ndarray:
        """(B,T,h,w) normalised frames and masks, (B,T,2) sub-pixel phases -> (B,2,3h,3w)."""


def _torch_oom_errors() -> tuple[type[BaseException], ...]:
    import torch
    return (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), MemoryError)


class TorchRunner:
    """A PyTorch model as a runner. `precision` other than fp32 needs a CUDA device (autocast)."""

    backend = "torch"

    def __init__(self, model: Any, device: Any, precision: str = "fp32"):
        import torch
        self.device = torch.device(device)
        check_precision(precision, self.device.type == "cuda", "torch")
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise MisrError(f"--precision bf16: {torch.cuda.get_device_name(self.device)} has no bfloat16 support")
        self.model = model.eval().to(self.device)
        self.precision = precision
        self.provider = str(self.device)
        self.default_batch = DEFAULT_GPU_BATCH if self.device.type == "cuda" else 1
        self._dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        self._oom = _torch_oom_errors()

    def __call__(self, frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> np.ndarray:
        import torch
        cuda = self.device.type == "cuda"
        try:
            with torch.inference_mode():
                inputs = [torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in (frames, masks, phases)]
                if cuda:
                    inputs = [a.pin_memory().to(self.device, non_blocking=True) for a in inputs]
                autocast = (torch.autocast("cuda", dtype=self._dtype) if cuda and self._dtype
                            else contextlib.nullcontext())
                with autocast:
                    mean, log_scale = self.model(*inputs)
                return torch.cat([mean.float(), log_scale.float()], dim=1).cpu().numpy()
        except self._oom as exc:
            message = (str(exc).strip().splitlines() or ["out of memory"])[0]
        # outside the except block: the failed pass's tensors are released before emptying the cache
        if cuda:
            torch.cuda.empty_cache()
        raise TileOutOfMemory(message)


class OnnxRunner:
    """An exported ONNX model in ONNX Runtime. device: 'auto', 'cpu', 'cuda' or 'cuda:N'."""

    backend = "onnx"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None):
        ort = import_onnxruntime()
        available = ort.get_available_providers()
        has_cuda = "CUDAExecutionProvider" in available
        if device.startswith("cuda") and not has_cuda:
            raise MisrError(f"--backend onnx --device {device}: onnxruntime {ort.__version__} has no "
                            "CUDAExecutionProvider (install onnxruntime-gpu instead of onnxruntime)")
        if device not in ("auto", "cpu") and not device.startswith("cuda"):
            raise MisrError(f"--device {device}: not a device name (use auto, cpu or cuda)")
        providers: list[Any] = ["CPUExecutionProvider"]
        if has_cuda and device != "cpu":
            index = int(device.split(":")[1]) if ":" in device else 0
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no provider chatter on stderr
        if threads is None:
            import torch
            threads = torch.get_num_threads()
        options.intra_op_num_threads = max(1, threads)
        # memory patterns pre-plan one shape; our shapes vary (T, edge tiles) and, measured on a
        # 128x128xT9 scene, the CPU peak drops from about 1100 to 620 MB without them, same speed
        options.enable_mem_pattern = False
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise MisrError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        self.provider = self.session.get_providers()[0]  # what really runs (CUDA may fall back)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.default_batch = DEFAULT_GPU_BATCH if self.provider == "CUDAExecutionProvider" else 1
        self.precision = "fp32"
        self.input_names = {i.name for i in self.session.get_inputs()}

    def __call__(self, frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> np.ndarray:
        feed = {"frames": frames, "masks": masks, "phases": np.ascontiguousarray(phases, np.float32)}
        try:
            mean, log_scale = self.session.run(list(ONNX_OUTPUTS), {k: v for k, v in feed.items() if k in self.input_names})
        except Exception as exc:
            text = str(exc)
            if "out of memory" in text.lower() or "failed to allocate" in text.lower():
                raise TileOutOfMemory(text.splitlines()[0]) from None
            raise
        return np.concatenate([mean, log_scale], axis=1)


def check_precision(precision: str, cuda: bool, backend: str) -> None:
    """Refuse precisions that this backend/device pair does not run."""
    if precision not in PRECISIONS:
        raise MisrError(f"--precision {precision}: use one of {', '.join(PRECISIONS)}")
    if precision != "fp32" and backend == "onnx":
        raise MisrError(f"--precision {precision}: the onnx backend runs fp32 only")
    if precision != "fp32" and not cuda:
        raise MisrError(f"--precision {precision}: mixed precision runs on CUDA GPUs only (use fp32 on the CPU)")


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MisrError("--backend onnx: the onnxruntime package is not installed "
                        "(pip install onnxruntime, or onnxruntime-gpu for NVIDIA GPUs)") from None
    return onnxruntime


# ---------------------------------------------------------------------------------------------
# Export


def export_onnx(model_name: str, weights: str | Path | None, output: str | Path) -> dict[str, str]:
    """Export `model_name` with `weights` (default: shipped) to an ONNX file; returns its metadata.

    Inputs `frames` and `masks` (B, T, H, W) float32 (and `phases` (B, T, 2) for a model with
    phase inputs), outputs `mean` and `log_scale` (B, 1, 3H, 3W); batch, T, H and W are
    dynamic. The file is written atomically.
    """
    import torch
    try:
        import onnx
    except ImportError:
        raise MisrError("export-onnx: the onnx package is not installed (pip install onnx)") from None
    from .weights import load_model

    loaded = load_model(model_name, weights, "cpu")
    phase_inputs = bool(getattr(loaded.model.config, "phase_inputs", False))
    metadata = {
        "model": loaded.name,
        "config": json.dumps(loaded.model.config.to_dict()),
        "weights": loaded.path.name,
        "weights_sha256": loaded.sha256,
        "engine_version": __version__,
        "scale": str(SCALE),
        "torch_version": torch.__version__,
        "inputs": "frames (B,T,H,W) float32, (value - scene mean) / scene std, cloudy pixels 0; "
                  "masks (B,T,H,W) float32, 1 = clear, 0 = cloudy"
                  + ("; phases (B,T,2) float32, sub-pixel phase (dy, dx) of each registered frame, "
                     "LR px in [-0.5, 0.5]" if phase_inputs else ""),
        "outputs": "mean (B,1,3H,3W) and log_scale (B,1,3H,3W) of a Laplace distribution, in "
                   "normalised units (scale = exp(log_scale) * scene std)",
    }
    dynamic = {0: "batch", 1: "frames", 2: "height", 3: "width"}
    dynamic_sr = {0: "batch", 2: "sr_height", 3: "sr_width"}
    example = (torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32), torch.zeros(1, 3, 2))
    inputs = list(ONNX_INPUTS) if phase_inputs else list(ONNX_INPUTS[:2])
    axes = {"frames": dynamic, "masks": dynamic, "phases": {0: "batch", 1: "frames"},
            "mean": dynamic_sr, "log_scale": dynamic_sr}
    output = Path(output)
    handle, temporary = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
    os.close(handle)
    try:
        with warnings.catch_warnings():
            # the TorchScript-based exporter: fast (about a second) and it keeps every axis
            # dynamic; it warns that it is the legacy path, and about constant folding of Slice
            warnings.simplefilter("ignore")
            torch.onnx.export(loaded.model, example[:len(inputs)], temporary, input_names=inputs,
                              output_names=list(ONNX_OUTPUTS), opset_version=ONNX_OPSET,
                              dynamic_axes={name: axes[name] for name in inputs + list(ONNX_OUTPUTS)},
                              dynamo=False)
        proto = onnx.load(temporary)
        del proto.metadata_props[:]
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.doc_string = f"qgis-misr {loaded.name} x{SCALE} multi-image super-resolution"
        onnx.checker.check_model(proto)
        onnx.save(proto, temporary)
        os.replace(temporary, output)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return metadata


def cache_dir() -> Path:
    """Where ONNX models exported on the fly are kept: $MISR_CACHE_DIR, else ~/.cache/qgis-misr."""
    if os.environ.get("MISR_CACHE_DIR"):
        return Path(os.environ["MISR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qgis-misr"


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file (read by ONNX Runtime, without loading the weights)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise MisrError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
    return dict(session.get_modelmeta().custom_metadata_map)


def cached_onnx(model_name: str, weights: str | Path | None) -> Path:
    """The ONNX export of these weights, from the cache (exported now if missing or stale)."""
    from .weights import load_model
    loaded = load_model(model_name, weights, "cpu")  # checks the file (small: milliseconds)
    target = cache_dir() / f"{loaded.sha256}.onnx"
    if target.is_file():
        try:
            if onnx_metadata(target).get("engine_version") == __version__:
                return target
        except MisrError:
            pass  # damaged: export again
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MisrError(f"{target.parent}: cannot create the ONNX cache folder ({exc.strerror}); "
                        "set MISR_CACHE_DIR or export with `misr export-onnx`") from None
    export_onnx(model_name, loaded.path, target)
    return target


# ---------------------------------------------------------------------------------------------
# Choosing a backend


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
        from .inference import resolve_device
        from .weights import load_model
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
