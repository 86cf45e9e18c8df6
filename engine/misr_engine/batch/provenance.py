"""Whether a scene is already done: its outputs exist with this run's provenance tags.

`super_resolve_files` tags both outputs with the weights' SHA-256 (MISR_WEIGHTS_SHA256), the
run's options with its input paths (MISR_OPTIONS, `pipeline.run_options`), the engine's version
(MISR_ENGINE_VERSION: another version may compute another SR from the same inputs) and the
product (MISR_PRODUCT). Outputs are committed atomically, so an output that exists is whole: a scene
whose outputs all carry the tags this run would write is done, and a rerun skips it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from osgeo import gdal

from .. import __version__
from ..errors import MisrError
from ..pipeline import PRODUCTS, SuperResolveRequest, run_options

MISSING, DONE, PARTIAL, OTHER = "missing", "done", "partial", "other"
"""Output states: none exists; all exist from this run; some do and the rest are missing; one
exists from another run (other weights, inputs or options, or not misr's)."""


@dataclass(frozen=True)
class OutputState:
    kind: str  # MISSING, DONE, PARTIAL or OTHER
    message: str = ""  # for OTHER: one line naming the file and what differs


def output_state(request: SuperResolveRequest, weights_sha256: str) -> OutputState:
    """How `request`'s outputs stand against the run it describes with weights `weights_sha256`."""
    expected = json.loads(json.dumps(run_options(request)))
    present = []
    for path, (product, _) in zip(request.rasters, PRODUCTS):
        if not os.path.lexists(path):
            present.append(False)
            continue
        why = _difference(read_tags(path), product, weights_sha256, expected)
        if why:
            return OutputState(OTHER, f"{path}: already exists from another run ({why}); "
                                      "use --overwrite to replace it")
        present.append(True)
    if request.kernels_out:  # the fine-tuning's kernels (JSON), committed with the rasters
        present.append(os.path.lexists(request.kernels_out))
    return OutputState(DONE if all(present) else PARTIAL if any(present) else MISSING)


def read_tags(path: str) -> dict[str, str] | None:
    """The dataset metadata of a raster, or None if GDAL cannot open it."""
    try:
        dataset = gdal.OpenEx(str(path), gdal.OF_RASTER | gdal.OF_READONLY)
    except RuntimeError:
        return None
    return dict(dataset.GetMetadata() or {}) if dataset is not None else None


def _difference(tags: dict[str, str] | None, product: str, weights_sha256: str,
                expected: dict[str, Any]) -> str:
    """What differs between an output's tags and this run's ('' when nothing does)."""
    if tags is None:
        return "not a raster"
    if tags.get("MISR_PRODUCT") != product:
        return f"MISR_PRODUCT is {tags.get('MISR_PRODUCT')!r}, not {product!r}"
    if tags.get("MISR_WEIGHTS_SHA256") != weights_sha256:
        return "other weights"
    if tags.get("MISR_ENGINE_VERSION") != __version__:
        return f"written by misr {tags.get('MISR_ENGINE_VERSION', 'of unknown version')}, this is misr {__version__}"
    try:
        written = json.loads(tags["MISR_OPTIONS"])
    except (KeyError, ValueError):
        return "no MISR_OPTIONS tag: written by an older misr"
    for name in sorted(set(expected) | set(written)):
        if expected.get(name) != written.get(name):
            if name in ("frames", "masks"):
                return f"other {name}"
            return f"{name}: {json.dumps(written.get(name))} there, {json.dumps(expected.get(name))} here"
    return ""


def weights_sha256(request: SuperResolveRequest) -> str:
    """The SHA-256 that the outputs of `request` record for its weights (the safetensors file;
    for an .onnx model, the one it was exported from), or a MisrError naming the file."""
    if request.weights and str(request.weights).endswith(".onnx"):
        from ..inference.onnx_export import onnx_metadata
        if not os.path.isfile(request.weights):
            raise MisrError(f"{request.weights}: ONNX model not found")
        return onnx_metadata(request.weights).get("weights_sha256", "")
    from ..models.weights import check_weights
    path, _ = check_weights(request.model, request.weights)
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """`file_sha256`, once per file version (size and mtime are part of the cache key)."""
    from ..models.weights import file_sha256
    return file_sha256(Path(path))


def checksum(path: str | None) -> str | None:
    """The SHA-256 of an output file (None without one)."""
    if not path or not os.path.isfile(path):
        return None
    from ..models.weights import file_sha256
    return file_sha256(Path(path))
