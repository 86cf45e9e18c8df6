"""Test-time fine-tuning with the kernel prior (issue 15 item 2): it lowers the scene's own
leave-one-out error and raises cPSNR under a blur wider than any training stack's, on a copy of
the network; 0 steps is no fine-tuning at all; the kernels it estimates are valid and written
on request; the CLI and the plugin's capability check see it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from misr_engine.datasets.simulate import Degradation, degrade
from misr_engine.evaluation.metrics import cpsnr
from misr_engine.inference.finetune import (DEFAULT_STEPS, FineTuneSettings, FrameKernels, as_batch,
                                            finetune_on_scene, held_out_order, kernel_shape, leave_one_out_loss,
                                            window_origins)
from misr_engine.inference.tiled import finetuning_inputs, super_resolve
from misr_engine.models.kernel_prior import load_kernel_prior
from misr_engine.rasters.bands import read_band
from misr_engine.rasters.stack import Stack

from tests.rasters import HOLDOUT_HR

CPU = torch.device("cpu")
MISR = [sys.executable, "-m", "misr_engine.cli"]
WIDE_BLUR = Degradation(psf_sigma=(2.6, 3.0), halo_probability=0.0, noise_fraction=(0.002, 0.005),
                        cloud_probability=0.0, full_cloud_probability=0.0, change_probability=0.0, max_shift_lr=1.0)
"""A blur wider than any training stack's (sigma up to 2.4 HR px), little noise, no clouds."""


def crop(stack, size: int = 32) -> Stack:
    return Stack.in_memory(stack.frames[:, :size, :size], stack.masks[:, :size, :size])


def mean_loss(model, windows, phases, kernels: FrameKernels | None = None) -> float:
    """The mean leave-one-out loss over the frames left out in turn, with their kernels."""
    prior = load_kernel_prior()
    kernels = kernels or FrameKernels(prior, len(phases))
    losses = []
    with torch.no_grad():
        for frames, masks in windows:
            x, m, p = as_batch(frames, masks, phases, CPU)
            losses += [leave_one_out_loss(model, x, m, p, k, kernels.kernel(k)).item() for k in held_out_order(masks)]
    return float(np.mean(losses))


def test_frames_left_out_are_the_mostly_clear_ones_clearest_first():
    masks = np.ones((4, 10, 10), bool)
    masks[0, :8] = False  # 20% clear
    masks[2, :3] = False  # 70% clear
    assert held_out_order(masks) == [1, 3, 2]
    masks[:] = False
    masks[3, 0, 0] = True
    assert held_out_order(masks) == [3]


def test_windows_spread_over_large_scenes_and_cover_small_ones():
    assert window_origins(64, 80, size=96) == [(0, 0)]  # the whole scene fits in one window
    assert window_origins(64, 80, size=64) == [(0, 8)]  # one window, centred
    big = window_origins(1000, 3000, size=96, count=4)
    assert len(big) == 4 and len({r for r, _ in big}) == 2 and len({c for _, c in big}) == 2
    assert all(0 <= r <= 1000 - 96 and 0 <= c <= 3000 - 96 for r, c in big)
    assert min(c for _, c in big) < 1000 and max(c for _, c in big) > 2000  # not all in the centre
    assert len(window_origins(1000, 3000, size=96, count=1)) == 1


def test_fine_tuning_lowers_the_leave_one_out_error_on_a_copy(holdout_stack, shipped_model):
    windows, phases = finetuning_inputs(crop(holdout_stack))
    before = {k: v.clone() for k, v in shipped_model.state_dict().items()}
    result = finetune_on_scene(shipped_model, windows, phases, FineTuneSettings(12, 1e-4), CPU)
    assert len(result.losses) == 12 and result.model is not shipped_model
    assert all(torch.equal(v, shipped_model.state_dict()[k]) for k, v in before.items())  # original untouched
    untuned = mean_loss(shipped_model, windows, phases)
    kernels = FrameKernels(load_kernel_prior(), len(phases))
    with torch.no_grad():
        kernels.latents.copy_(torch.from_numpy(result.latents))
    assert mean_loss(result.model, windows, phases, kernels) < 0.97 * untuned


@pytest.fixture(scope="module")
def wide_blur_stack():
    """9 frames of the real held-out crop under WIDE_BLUR (fixed seed)."""
    return degrade(read_band(str(HOLDOUT_HR))[0], 9, np.random.default_rng(3), WIDE_BLUR)


@pytest.mark.xfail(strict=True, reason="issue 15 not resolved: with the shipped weights, fine-tuning at its "
                   "defaults (lr 1e-5, 20 steps) gains 0.03 dB on this scene (stage 7 weights: 43.89 against "
                   "43.86 dB; stage 6: 43.88 against 43.84; it lost 0.08 with the kernels started at 1.2 HR px, "
                   "2026-12-05): the kernels end near 2.0 HR px for a true 2.6-3.0; strict: passing means it works")
def test_fine_tuning_at_its_defaults_raises_cpsnr_under_a_blur_outside_the_training_range(
        wide_blur_stack, shipped_model):
    """The target of test-time fine-tuning: a gain under a blur wider than in training."""
    stack, hr = crop(wide_blur_stack), wide_blur_stack.hr[:96, :96] / 10000.0
    plain = cpsnr(super_resolve(stack, shipped_model, CPU)[0] / 10000.0, hr)
    tuned = cpsnr(super_resolve(stack, shipped_model, CPU, ttf_steps=DEFAULT_STEPS)[0] / 10000.0, hr)
    assert tuned > plain + 0.1


def test_estimated_kernels_are_valid_and_wider_for_a_wider_blur(wide_blur_stack, holdout_stack, shipped_model):
    widths = []
    for stack in (holdout_stack, wide_blur_stack):
        windows, phases = finetuning_inputs(crop(stack))
        result = finetune_on_scene(shipped_model, windows, phases, FineTuneSettings(18, 1e-5), CPU)
        kernels = result.kernels[result.held_out]
        assert (kernels >= 0).all() and np.allclose(kernels.sum(axis=(-2, -1)), 1.0, atol=1e-5)
        widths.append(np.mean([kernel_shape(k[0])["sigma_major"] for k in kernels]))
    assert widths[1] > widths[0]


def test_under_a_wide_blur_the_kernels_start_and_end_wider(wide_blur_stack, holdout_stack, shipped_model):
    """The kernels start at the width where the other frames best predict a frame left out, when
    wider than the engine's 1.2 HR px: under a 2.6-3.0 HR px blur they start at 1.6 or more and end
    wider than 1.8 (from 1.2 they ended at 1.3-1.5); frames blurred as in training start at 1.2."""
    reports = []
    for stack in (holdout_stack, wide_blur_stack):
        super_resolve(crop(stack), shipped_model, CPU, ttf_steps=DEFAULT_STEPS, on_kernels=reports.append)
    assert reports[0]["initial_sigma"] == 1.2 and reports[1]["initial_sigma"] >= 1.6
    ended = [frame["sigma_major"] for frame in reports[1]["frames"] if frame["estimated"]]
    assert np.median(ended) > 1.8


def test_zero_steps_is_bit_identical_to_no_fine_tuning(holdout_stack, shipped_model):
    stack = crop(holdout_stack)
    plain = super_resolve(stack, shipped_model, CPU)
    for zero in (0, FineTuneSettings(0)):
        same = super_resolve(stack, shipped_model, CPU, ttf_steps=zero)
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(plain, same))


def test_a_fine_tuned_run_keeps_the_psf_width_the_shipped_network_chose(holdout_stack, shipped_model):
    """The back-projection's width is chosen before fine-tuning, from the shipped network: chosen
    again from the tuned one it cost two validation scenes 0.25 / 0.75 dB."""
    stack, said, widths = crop(holdout_stack), [], []
    super_resolve(stack, shipped_model, CPU, on_psf_sigma=widths.append)
    super_resolve(stack, shipped_model, CPU, ttf_steps=2, on_psf_sigma=widths.append,
                  progress=lambda done, message: said.append(message))
    assert widths[0] == widths[1]
    choosing = said.index("choosing the back-projection's PSF width")
    assert choosing < min(i for i, message in enumerate(said) if message.startswith("test-time fine-tuning"))


def test_fine_tuning_needs_three_frames(holdout_stack, shipped_model):
    windows, phases = finetuning_inputs(crop(holdout_stack))
    two = [(frames[:2], masks[:2]) for frames, masks in windows]
    with pytest.raises(ValueError, match="at least 3 frames"):
        finetune_on_scene(shipped_model, two, phases[:2], FineTuneSettings(1), CPU)


def _misr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MISR, "super-resolve", *args], capture_output=True, text=True, timeout=600)


def test_cli_ttf_steps_runs_reports_progress_writes_kernels_and_keeps_the_shipped_weights(tmp_path, sample_paths):
    from osgeo import gdal
    from misr_engine.models.registry import model_spec
    from misr_engine.models.weights import file_sha256
    shipped = model_spec("piunet").default_weights
    before = file_sha256(shipped)
    frames, masks = sample_paths
    out, kernels = tmp_path / "sr.tif", tmp_path / "kernels.json"
    result = _misr("--frames", *frames[:4], "--masks", *masks[:4], "-o", str(out), "--ttf-steps", "2",
                   "--kernels-out", str(kernels), "--tile-size", "48", "--progress", "json")
    assert result.returncode == 0, result.stderr
    messages = [e.get("message", "") for e in map(json.loads, result.stdout.splitlines())]
    assert any(m.startswith("test-time fine-tuning 2/2") for m in messages)
    assert gdal.Open(str(out)).GetMetadata()["MISR_TTF_STEPS"] == "2"
    report = json.loads(kernels.read_text())
    assert report["MISR_WEIGHTS_SHA256"] == before and report["steps"] == 2 and len(report["frames"]) == 4
    assert sum(frame["estimated"] for frame in report["frames"]) == 2  # two steps: two frames left out
    for frame in report["frames"]:
        kernel = np.array(frame["kernel"])
        assert kernel.shape == (15, 15) and kernel.min() >= 0 and abs(kernel.sum() - 1) < 1e-4
        assert frame["sigma_major"] >= frame["sigma_minor"] > 0 and 0 <= frame["ellipticity"] < 1
    assert file_sha256(shipped) == before


def test_cli_ttf_steps_zero_writes_the_same_pixels_as_no_fine_tuning(tmp_path, sample_paths):
    from osgeo import gdal
    frames, masks = sample_paths
    arrays = []
    for name, extra in (("plain.tif", []), ("zero.tif", ["--ttf-steps", "0"])):
        result = _misr("--frames", *frames[:4], "--masks", *masks[:4], "-o", str(tmp_path / name), *extra)
        assert result.returncode == 0, result.stderr
        arrays.append(gdal.Open(str(tmp_path / name)).ReadAsArray())
    assert np.array_equal(arrays[0], arrays[1], equal_nan=True)


@pytest.mark.parametrize("extra, message", [(["--ttf-steps", "-1"], "--ttf-steps -1: must be at least 0"),
                                            (["--ttf-steps", "3", "--backend", "onnx"], "needs --backend torch"),
                                            (["--kernels-out", "k.json"], "--kernels-out needs --ttf-steps")])
def test_cli_rejects_bad_ttf_requests_in_one_line(tmp_path, sample_paths, extra, message):
    frames, _ = sample_paths
    result = _misr("--frames", *frames[:3], "-o", str(tmp_path / "sr.tif"), *extra)
    assert result.returncode != 0 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "sr.tif").exists()


def test_cli_with_two_frames_warns_and_still_super_resolves(tmp_path, sample_paths):
    frames, masks = sample_paths
    out = tmp_path / "sr.tif"
    result = _misr("--frames", *frames[:2], "--masks", *masks[:2], "-o", str(out), "--ttf-steps", "5",
                   "--progress", "json")
    assert result.returncode == 0, result.stderr
    warnings = [e["message"] for e in map(json.loads, result.stdout.splitlines()) if e["event"] == "warning"]
    assert any("test-time fine-tuning skipped" in w for w in warnings) and out.exists()


def test_the_plugin_probe_finds_the_engines_ttf_option():
    """The dialog and the Processing algorithm enable fine-tuning when the probe lists it."""
    from pathlib import Path
    repo = str(Path(__file__).resolve().parents[3])
    if repo not in sys.path:
        sys.path.insert(0, repo)
    from qgis_misr.core.command import TTF_OPTION
    from qgis_misr.core.engine import EngineLocation, probe_engine
    caps = probe_engine(EngineLocation(tuple(MISR), "test"))
    assert caps.ok and caps.supports(TTF_OPTION)


def test_a_callers_runner_keeps_its_network_after_a_fine_tuned_run(holdout_stack, shipped_model):
    from misr_engine.inference.backends import TorchRunner
    runner = TorchRunner(shipped_model, CPU)
    stack = Stack.in_memory(holdout_stack.frames[:, :32, :32], holdout_stack.masks[:, :32, :32])
    tuned_sr, _ = super_resolve(stack, runner, ttf_steps=2)
    assert runner.model is shipped_model  # the next scene must not inherit this scene's tuning
    assert not np.allclose(tuned_sr, super_resolve(stack, runner)[0], equal_nan=True)
