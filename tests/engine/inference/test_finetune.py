"""Test-time fine-tuning: it lowers the scene's own leave-one-out error, on a copy of the
network, without spoiling the SR; the CLI and the plugin's capability check see it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from misr_engine.inference.finetune import as_batch, finetune_on_scene, held_out_order, leave_one_out_loss, network_psf
from misr_engine.inference.normalisation import Normalisation
from misr_engine.inference.tiled import super_resolve
from misr_engine.registration.streamed import stack_registration
from misr_engine.evaluation.metrics import cpsnr
from misr_engine.registration.stack import move_rows, subpixel_phase, whole_pixel_moves
from misr_engine.rasters.stack import Stack

CPU = torch.device("cpu")
MISR = [sys.executable, "-m", "misr_engine.cli"]


def registered_crop(stack, size: int = 32):
    """Normalised, registered frames, masks and phases of a crop, as inference prepares them."""
    frames, masks = stack.frames[:, :size, :size], stack.masks[:, :size, :size]
    shifts = stack_registration(Stack.in_memory(frames, masks))[0]
    moved, moved_masks = move_rows(frames, masks, whole_pixel_moves(shifts), 0, (0, size), size)
    return Normalisation.of(moved, moved_masks).apply(moved, moved_masks), moved_masks, subpixel_phase(shifts)


def mean_loss(model, frames, masks, phases) -> float:
    x, m, p = as_batch(frames, masks, phases, CPU)
    with torch.no_grad():
        psf = network_psf(model, CPU)
        return float(np.mean([leave_one_out_loss(model, x, m, p, k, psf).item() for k in held_out_order(masks)]))


def test_frames_left_out_are_the_mostly_clear_ones_clearest_first():
    masks = np.ones((4, 10, 10), bool)
    masks[0, :8] = False  # 20% clear
    masks[2, :3] = False  # 70% clear
    assert held_out_order(masks) == [1, 3, 2]
    masks[:] = False
    masks[3, 0, 0] = True
    assert held_out_order(masks) == [3]


def test_fine_tuning_lowers_the_leave_one_out_error_on_a_copy(holdout_stack, shipped_model):
    frames, masks, phases = registered_crop(holdout_stack)
    before = {k: v.clone() for k, v in shipped_model.state_dict().items()}
    visits = len(held_out_order(masks))
    losses = []
    tuned = finetune_on_scene(shipped_model, frames, masks, phases, steps=2 * visits, device=CPU,
                              learning_rate=1e-4, on_step=lambda step, loss: losses.append(loss))
    assert len(losses) == 2 * visits and tuned is not shipped_model
    assert all(torch.equal(v, shipped_model.state_dict()[k]) for k, v in before.items())  # original untouched
    first, second = np.array(losses[:visits]), np.array(losses[visits:])  # each frame left out twice
    assert second.mean() < 0.98 * first.mean()


def test_fine_tuning_with_the_default_rate_keeps_the_sr(holdout_stack, shipped_model):
    """On data like the training data it has nothing to adapt to (measured: -0.04 dB on validation
    scenes); it must not spoil the SR."""
    frames, masks, phases = registered_crop(holdout_stack)
    tuned = finetune_on_scene(shipped_model, frames, masks, phases, steps=10, device=CPU)
    stack = Stack.in_memory(holdout_stack.frames[:, :32, :32], holdout_stack.masks[:, :32, :32])
    hr = holdout_stack.hr[:96, :96] / 10000.0
    plain = cpsnr(super_resolve(stack, shipped_model, CPU)[0] / 10000.0, hr)
    adapted = cpsnr(super_resolve(stack, tuned, CPU)[0] / 10000.0, hr)
    assert abs(adapted - plain) < 0.2 and adapted != plain


def test_fine_tuning_needs_three_frames(holdout_stack, shipped_model):
    frames, masks, phases = registered_crop(holdout_stack)
    with pytest.raises(ValueError, match="at least 3 frames"):
        finetune_on_scene(shipped_model, frames[:2], masks[:2], phases[:2], steps=1, device=CPU)


def _misr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MISR, "super-resolve", *args], capture_output=True, text=True, timeout=600)


def test_cli_ttf_steps_runs_reports_progress_and_tags_the_outputs(tmp_path, sample_paths):
    from osgeo import gdal
    frames, masks = sample_paths
    out = tmp_path / "sr.tif"
    result = _misr("--frames", *frames[:4], "--masks", *masks[:4], "-o", str(out), "--ttf-steps", "2",
                   "--tile-size", "48", "--progress", "json")
    assert result.returncode == 0, result.stderr
    messages = [e.get("message", "") for e in map(json.loads, result.stdout.splitlines())]
    assert any(m.startswith("test-time fine-tuning 2/2") for m in messages)
    assert gdal.Open(str(out)).GetMetadata()["MISR_TTF_STEPS"] == "2"


@pytest.mark.parametrize("extra, message", [(["--ttf-steps", "-1"], "--ttf-steps -1: must be at least 0"),
                                            (["--ttf-steps", "3", "--backend", "onnx"], "needs --backend torch")])
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
