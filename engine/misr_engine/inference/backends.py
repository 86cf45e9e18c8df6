"""Inference backends: the network as a function of a batch of equal tiles, on torch or ONNX Runtime.

A *runner* maps normalised frames and masks, numpy float32 (B, T, h, w), to the network's two
outputs stacked as (B, 2, 3h, 3w): the SR mean and the Laplace log-scale, in normalised units.
The tiled inference (`tiled.py`) only sees runners, so both backends share one tiling loop.

* `TorchRunner`: the PyTorch model on CPU or CUDA; on CUDA optionally under autocast (fp16/bf16).
* `OnnxRunner`: an exported ONNX model in ONNX Runtime, CUDAExecutionProvider when the
  onnxruntime-gpu package provides it (and a GPU is wanted), CPUExecutionProvider otherwise.
* `RefinedRunner`: either of them with steps after the network (*refinements*) that rework its
  SR from the tile's own frames (the detail gate, the back-projection).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import MisrError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "fp16", "bf16")
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


Refinement = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]
"""(sr (B,1,3h,3w), frames (B,T,h,w), masks, phases (B,T,2)) -> a reworked sr, torch tensors."""


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


class RefinedRunner:
    """A runner whose SR is `runner`'s passed through `refinements` in turn, on the runner's torch
    device (the CPU for ONNX Runtime); the predicted uncertainty is left as the network gives it."""

    def __init__(self, runner: Runner, refinements: Sequence[Refinement]):
        import torch
        self.runner, self.refinements = runner, tuple(refinements)
        self.refine_device = getattr(runner, "device", torch.device("cpu"))

    def __getattr__(self, name: str) -> Any:
        """What the wrapped runner says about itself (backend, provider, default_batch, ...)."""
        return getattr(self.runner, name)

    def __call__(self, frames: np.ndarray, masks: np.ndarray, phases: np.ndarray) -> np.ndarray:
        import torch
        output = self.runner(frames, masks, phases)
        with torch.inference_mode():
            inputs = [torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.refine_device)
                      for a in (output[:, :1], frames, masks, phases)]
            sr = inputs[0]
            for refine in self.refinements:
                sr = refine(sr, *inputs[1:])
            output[:, :1] = sr.cpu().numpy()
        return output


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


def resolve_device(name: str) -> torch.device:
    """'auto' -> the first CUDA GPU if torch sees one, else the CPU."""
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise MisrError(f"--device {name}: not a device name (use auto, cpu or cuda)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise MisrError(f"--device {name}: torch {torch.__version__} sees no CUDA GPU on this machine")
        if device.index is not None and device.index >= count:
            raise MisrError(f"--device {name}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise MisrError(f"--device {name}: torch {torch.__version__} sees no Apple GPU (MPS) on this machine")
    elif device.type != "cpu":
        raise MisrError(f"--device {name}: the engine runs on cpu, cuda or mps, not on {device.type} devices")
    return device
