"""`misr bench --json` reports the documented figures; batched, out-of-memory-tolerant, streamed
tiled inference gives the same result as the plain one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from osgeo import gdal

from misr_engine import SCALE
from misr_engine.inference.backends import check_precision
from misr_engine.errors import MisrError
from misr_engine.rasters.writer import StripWriter
from misr_engine.inference.tiled import EDGE_CONTEXT, super_resolve, super_resolve_strips
from misr_engine.rasters.grid import Grid
from misr_engine.rasters.stack import Stack


def test_bench_quick_json_reports_every_documented_figure(tmp_path):
    command = [sys.executable, "-m", "misr_engine.cli", "bench", "--quick", "--json", "--scene-size", "24",
               "--sizes", "24,72", "--tile-size", "24", "--frames", "3", "--repeats", "2", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "MISR_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["engine_version"] and report["settings"]["quick"] is True
    machine = report["machine"]
    assert machine["cpu"] and machine["cpu_count"] >= 1 and machine["torch_threads"] >= 1
    models = {entry["model"]: entry for entry in report["models"]}  # every model with shipped weights
    assert "piunet" in models and all(len(entry["weights_sha256"]) == 64 for entry in models.values())
    model = models["piunet"]
    backends = {(r["backend"], r["device"]) for r in model["results"]}
    assert ("torch", "cpu") in backends
    if _has_onnxruntime():
        assert ("onnx", "cpu") in backends
    for result_ in model["results"]:
        scene = result_["scene"]
        assert scene["size"] == 24 and scene["frames"] == 3 and scene["repeats"] == 2
        assert scene["ms_median"] > 0 and scene["ms_min"] > 0 and scene["peak_rss_mb"] > 0
        assert result_["provider"]
        assert [r["size"] for r in result_["rasters"]] == [24, 72]
        for raster in result_["rasters"]:
            assert raster["seconds"] > 0 and raster["mp_per_s"] > 0 and raster["peak_rss_mb"] > 0
            assert raster["masks"] and raster["peak_rss_mb"] <= raster["estimate_mb"]  # the memory check's
            assert raster["tiles"] >= 1 and raster["output_mp"] == pytest.approx((raster["size"] * SCALE) ** 2 / 1e6,
                                                                                  rel=1e-3)
        scaling = result_["scaling"]
        assert scaling["pixel_ratio"] == pytest.approx(9) and scaling["time_ratio"] > 0
        assert "peak_rss_growth_mb" in scaling


def test_bench_without_masks_measures_the_screened_run_against_its_memory_check(tmp_path):
    command = [sys.executable, "-m", "misr_engine.cli", "bench", "--quick", "--json", "--model", "piunet",
               "--backends", "torch", "--devices", "cpu", "--scene-size", "24", "--sizes", "60", "--tile-size", "30",
               "--frames", "4", "--repeats", "1", "--threads", "1", "--without-masks"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "MISR_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    raster, = report["models"][0]["results"][0]["rasters"]
    assert report["settings"]["masks"] is False and raster["masks"] is False
    assert 0 < raster["peak_rss_mb"] <= raster["estimate_mb"]


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class PixelMean(torch.nn.Module):
    """A pointwise stand-in for PIUnet (so tiling cannot change its output): the masked temporal
    mean, repeated x3, and a log-scale of 0. Raises a CUDA out-of-memory error for inputs larger
    than `max_side` pixels or batches larger than `max_batch`, like a GPU that is too small."""

    def __init__(self, max_side: int = 10 ** 6, max_batch: int = 10 ** 6):
        super().__init__()
        self.max_side, self.max_batch, self.calls = max_side, max_batch, []

    def forward(self, frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor | None = None):
        self.calls.append(tuple(frames.shape))
        if max(frames.shape[-2:]) > self.max_side or len(frames) > self.max_batch:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        mean = (frames * masks).sum(1, keepdim=True) / masks.sum(1, keepdim=True).clamp(min=1e-3)
        mean = mean.repeat_interleave(SCALE, -2).repeat_interleave(SCALE, -1)
        return mean, torch.zeros_like(mean)


def synthetic_stack(size: int = 70, frames: int = 4) -> Stack:
    rng = np.random.default_rng(0)
    values = 100 + 10 * rng.standard_normal((frames, size, size)).astype(np.float32)
    masks = rng.random((frames, size, size)) > 0.2
    return Stack.in_memory(values, masks)


def test_out_of_memory_halves_the_batch_then_the_tile_size(monkeypatch):
    monkeypatch.setattr("misr_engine.registration.stack.estimate_shifts",
                        lambda f, m: np.zeros((len(f), 2)))  # no move: a pointwise check
    # pointwise too: the detail gate's and the back-projection's 31-pixel windows (and the
    # back-projection's resampling) would see the 20-pixel sub-tiles' edges
    monkeypatch.setattr("misr_engine.inference.detail_gate.GATE_RATIOS", None)
    monkeypatch.setattr("misr_engine.inference.consistency.CONSISTENCY_STEPS", 0)
    stack = synthetic_stack()
    reference, _ = super_resolve(stack, PixelMean(), torch.device("cpu"), tile_size=40, overlap=8)
    fits = 20 + 2 * EDGE_CONTEXT  # 20-pixel tiles with their mirrored context fit, 40-pixel ones do not
    model, warnings = PixelMean(max_side=fits, max_batch=1), []
    sr, scale = super_resolve(stack, model, torch.device("cpu"), tile_size=40, overlap=8, batch_size=2,
                              on_warning=warnings.append)
    np.testing.assert_allclose(sr, reference, rtol=1e-5)
    finite = scale[np.isfinite(scale)]
    assert np.allclose(finite, finite[0])  # exp(0) x the scene spread everywhere
    assert "retrying with 1" in warnings[0] and "retrying with 20-pixel tiles" in warnings[1]
    assert len(warnings) == 2  # remembered: later tiles go straight to the size that fits
    assert max(max(shape[-2:]) for shape in model.calls[-4:]) <= fits


def test_out_of_memory_at_the_smallest_tile_is_a_one_line_error():
    with pytest.raises(MisrError, match="out of memory even with 16-pixel tiles"):
        super_resolve(synthetic_stack(32), PixelMean(max_side=8), torch.device("cpu"), tile_size=32,
                      overlap=8, on_warning=lambda message: None)


def test_batched_tiles_give_the_result_of_one_tile_at_a_time(sample_stack, shipped_model):
    stack = Stack.in_memory(sample_stack.frames[:, :60, :90], sample_stack.masks[:, :60, :90])
    one, _ = super_resolve(stack, shipped_model, torch.device("cpu"), tile_size=40, overlap=8, batch_size=1)
    batched, _ = super_resolve(stack, shipped_model, torch.device("cpu"), tile_size=40, overlap=8, batch_size=3)
    assert np.nanmax(np.abs(one - batched)) < 1e-4 * float(np.nanmax(one) - np.nanmin(one))


def test_strips_cover_the_raster_in_order_each_about_one_tile_high():
    stack = synthetic_stack(100)
    strips = list(super_resolve_strips(stack, PixelMean(), torch.device("cpu"), tile_size=32, overlap=8))
    assert [s.row0 for s in strips] == list(np.cumsum([0] + [len(s.sr) for s in strips[:-1]]))
    assert sum(len(s.sr) for s in strips) == 100 * SCALE
    assert max(len(s.sr) for s in strips) <= 32 * SCALE


def test_strip_writer_writes_uneven_strips_as_one_georeferenced_image(tmp_path):
    grid = Grid("", (10.0, 1.0, 0.0, 20.0, 0.0, -1.0), 300, 600)
    image = np.arange(600 * 300, dtype=np.float32).reshape(600, 300)
    image[5:9, 7:11] = np.nan
    writer = StripWriter(str(tmp_path / "out.tif"), grid, {"KEY": "value"}, "band")
    for start, stop in ((0, 37), (37, 300), (300, 301), (301, 600)):
        writer.write(start, image[start:stop])
    writer.close()
    dataset = gdal.Open(str(tmp_path / "out.tif"))
    np.testing.assert_array_equal(dataset.ReadAsArray(), image)
    assert dataset.GetGeoTransform() == grid.geotransform and dataset.GetMetadata()["KEY"] == "value"
    assert np.isnan(dataset.GetRasterBand(1).GetNoDataValue())


def test_mixed_precision_is_refused_on_the_cpu_and_on_onnx():
    check_precision("fp32", False, "torch")
    check_precision("fp16", True, "torch")
    with pytest.raises(MisrError, match="CUDA GPUs only"):
        check_precision("bf16", False, "torch")
    with pytest.raises(MisrError, match="fp32 only"):
        check_precision("fp16", True, "onnx")
