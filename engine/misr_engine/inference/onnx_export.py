"""ONNX export of a network with its weights (dynamic batch, T and spatial axes; metadata in
`metadata_props`), and the cache of models exported on the fly, keyed by the weights' SHA-256."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

from .. import SCALE, __version__
from ..errors import MisrError
from ..models.weights import load_model
from .backends import ONNX_INPUTS, ONNX_OUTPUTS, import_onnxruntime

ONNX_OPSET = 17


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
