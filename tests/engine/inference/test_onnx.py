"""The ONNX export runs in ONNX Runtime like the torch model: same results on the real sample,
any number of frames and any tile size from one export, metadata that names its weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from misr_engine import SCALE, __version__  # noqa: E402
from misr_engine.inference.backends import OnnxRunner
from misr_engine.inference.engine import open_engine
from misr_engine.inference.onnx_export import cached_onnx, export_onnx, onnx_metadata
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.piunet import PIUnet, PIUnetConfig  # noqa: E402
from misr_engine.models.weights import file_sha256, save_weights
from misr_engine.models.registry import model_spec


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "piunet.onnx"
    export_onnx("piunet", None, path)
    return path


def test_onnx_matches_torch_on_the_real_sample_within_1e3_of_the_data_range(onnx_path, sample_stack,
                                                                              shipped_model):
    cpu = torch.device("cpu")
    sr_torch, scale_torch = super_resolve(sample_stack, shipped_model, cpu, tile_size=80, overlap=16)
    sr_onnx, scale_onnx = super_resolve(sample_stack, OnnxRunner(onnx_path, "cpu"), None,
                                        tile_size=80, overlap=16)
    data_range = float(np.nanmax(sr_torch) - np.nanmin(sr_torch))
    assert np.array_equal(np.isnan(sr_torch), np.isnan(sr_onnx))
    assert np.nanmax(np.abs(sr_onnx - sr_torch)) <= 1e-3 * data_range
    # the uncertainty is exp(log-scale): up to 1e5 under thick clouds, so compare it relatively
    assert np.nanmax(np.abs(scale_onnx - scale_torch) / scale_torch) <= 1e-3


def test_one_export_runs_any_frame_count_batch_and_tile_size(onnx_path, shipped_model):
    runner = OnnxRunner(onnx_path, "cpu")
    rng = np.random.default_rng(3)
    for batch, frames, height, width in ((1, 3, 20, 28), (2, 9, 33, 17), (1, 9, 16, 16)):
        x = rng.standard_normal((batch, frames, height, width)).astype(np.float32)
        m = (rng.random((batch, frames, height, width)) > 0.2).astype(np.float32)
        p = rng.uniform(-0.5, 0.5, (batch, frames, 2)).astype(np.float32)
        with torch.inference_mode():
            mean, log_scale = shipped_model(torch.from_numpy(x), torch.from_numpy(m), torch.from_numpy(p))
        out = runner(x, m, p)
        assert out.shape == (batch, 2, SCALE * height, SCALE * width)
        np.testing.assert_allclose(out[:, :1], mean.numpy(), atol=1e-4)
        np.testing.assert_allclose(out[:, 1:], log_scale.numpy(), atol=1e-4)


def test_export_metadata_names_model_config_weights_and_version(onnx_path):
    metadata = onnx_metadata(onnx_path)
    assert metadata["model"] == "piunet"
    assert metadata["weights_sha256"] == file_sha256(model_spec("piunet").default_weights)
    assert metadata["engine_version"] == __version__
    assert metadata["scale"] == str(SCALE)
    assert set(json.loads(metadata["config"])) == set(PIUnetConfig.__dataclass_fields__)  # every layer size


def test_tern_export_form_computes_the_eager_form(monkeypatch):
    torch.manual_seed(0)
    model = PIUnet(PIUnetConfig(n_feat=8, n_tefa=1, bottleneck=2, phase_inputs=True, deconv_kernel=5)).eval()
    frames, masks = torch.randn(2, 4, 12, 15), (torch.rand(2, 4, 12, 15) > 0.3).float()
    phases = torch.rand(2, 4, 2) - 0.5
    with torch.inference_mode():
        eager = model(frames, masks, phases)
        monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)  # the shifted-add form
        exported_form = model(frames, masks, phases)
    for a, b in zip(eager, exported_form):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_backend_onnx_exports_once_into_the_cache_keyed_by_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("MISR_CACHE_DIR", str(tmp_path))
    engine = open_engine("onnx", "piunet", None, "cpu")
    sha256 = file_sha256(model_spec("piunet").default_weights)
    assert engine.onnx == tmp_path / f"{sha256}.onnx" and engine.onnx.is_file()
    assert engine.provider == "CPUExecutionProvider" and engine.weights_sha256 == sha256
    stamp = engine.onnx.stat().st_mtime_ns
    assert cached_onnx("piunet", None).stat().st_mtime_ns == stamp  # reused, not exported again


def test_cli_backend_onnx_says_which_provider_ran(tmp_path, onnx_path, sample_paths):
    frames, masks = sample_paths
    out = tmp_path / "sr.tif"
    result = subprocess.run(
        [sys.executable, "-m", "misr_engine.cli", "super-resolve", "--frames", *frames, "--masks", *masks,
         "-o", str(out), "--backend", "onnx", "--weights", str(onnx_path), "--device", "cpu",
         "--tile-size", "140", "--progress", "json"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    start = next(e for e in map(json.loads, result.stdout.splitlines()) if e["event"] == "start")
    assert start["backend"] == "onnx" and start["provider"] == "CPUExecutionProvider"
    from osgeo import gdal
    tags = gdal.Open(str(out)).GetMetadata()
    assert tags["MISR_BACKEND"] == "onnx" and tags["MISR_PROVIDER"] == "CPUExecutionProvider"
    assert tags["MISR_WEIGHTS_SHA256"] == file_sha256(model_spec("piunet").default_weights)
    assert tags["MISR_ONNX_MODEL"] == onnx_path.name


@pytest.mark.parametrize("phase_inputs, deconv_kernel, backprojection_steps, refine_features, detail_features",
                         [(False, 0, 0, 0, 0), (True, 0, 0, 0, 0), (True, 7, 0, 0, 0), (True, 7, 2, 4, 0),
                          (True, 7, 2, 4, 5)])
def test_every_model_variant_exports_with_its_inputs_and_matches_torch(tmp_path, phase_inputs, deconv_kernel,
                                                                       backprojection_steps, refine_features,
                                                                       detail_features):
    torch.manual_seed(1)
    model = PIUnet(PIUnetConfig(n_feat=8, n_tefa=1, bottleneck=2, phase_inputs=phase_inputs,
                                deconv_kernel=deconv_kernel, backprojection_steps=backprojection_steps,
                                refine_features=refine_features, detail_features=detail_features,
                                detail_blocks=2, anchor_brightness=bool(detail_features))).eval()
    for layer in (model.to_mean, model.refinement and model.refinement.layers[-1], model.detail and model.detail.tail):
        if deconv_kernel and layer:  # zero-initialised: give them weights so they are exercised too
            torch.nn.init.normal_(layer.weight, std=0.1)
    weights = tmp_path / "variant.safetensors"
    save_weights(model, weights, {})
    export_onnx("piunet", weights, tmp_path / "variant.onnx")
    runner = OnnxRunner(tmp_path / "variant.onnx", "cpu")
    assert ("phases" in runner.input_names) == phase_inputs
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 19, 23)).astype(np.float32)
    m = (rng.random((2, 5, 19, 23)) > 0.2).astype(np.float32)
    p = rng.uniform(-0.5, 0.5, (2, 5, 2)).astype(np.float32)
    with torch.inference_mode():
        mean, log_scale = model(*(torch.from_numpy(a) for a in (x, m, p)))
    out = runner(x, m, p)
    np.testing.assert_allclose(out[:, :1], mean.numpy(), atol=1e-4)
    np.testing.assert_allclose(out[:, 1:], log_scale.numpy(), atol=1e-4)
