"""PIUnet's promises: order does not matter, any number of frames works, clouds do not leak."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from misr_engine.inference import consistency
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.piunet import PIUnet, PIUnetConfig
from misr_engine.rasters.stack import Stack

CPU = torch.device("cpu")


def crop(stack: Stack, size: int = 48) -> Stack:
    return Stack.in_memory(stack.frames[:, :size, :size], stack.masks[:, :size, :size])


def test_network_output_does_not_depend_on_frame_order():
    torch.manual_seed(0)
    model = PIUnet(PIUnetConfig(n_feat=16, n_tefa=2, bottleneck=4)).eval()
    frames = torch.randn(1, 7, 20, 20)
    masks = (torch.rand(1, 7, 20, 20) > 0.3).float()
    order = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    with torch.no_grad():
        mean, log_scale = model(frames, masks)
        mean_p, log_scale_p = model(frames[:, order], masks[:, order])
    assert torch.allclose(mean, mean_p, atol=1e-5)
    assert torch.allclose(log_scale, log_scale_p, atol=1e-5)
    # the check can fail: a different frame content does change the output
    with torch.no_grad():
        other, _ = model(frames.flip(-1), masks)
    assert not torch.allclose(mean, other, atol=1e-3)


def test_super_resolution_of_real_scene_does_not_depend_on_frame_order(sample_stack, shipped_model):
    stack = crop(sample_stack)
    order = np.array([4, 2, 7, 0, 5, 1, 6, 3])
    sr, scale = super_resolve(stack, shipped_model, CPU)
    sr_p, scale_p = super_resolve(Stack.in_memory(stack.frames[order], stack.masks[order]), shipped_model, CPU)
    spread = np.nanstd(sr)
    assert np.nanmax(np.abs(sr - sr_p)) < 1e-3 * spread
    assert np.nanmax(np.abs(scale - scale_p)) < 1e-3 * spread


def test_any_number_of_frames_gives_a_full_x3_result(sample_stack, shipped_model):
    stack = crop(sample_stack, 30)
    for count in (1, 2, 5, 16):
        index = np.arange(count) % len(stack.frames)
        # T=1: take the one fully clear frame
        if count == 1:
            index = np.array([int(np.argmax(stack.clear_fraction))])
        sr, scale = super_resolve(Stack.in_memory(stack.frames[index], stack.masks[index]), shipped_model, CPU)
        assert sr.shape == scale.shape == (90, 90)
        covered = np.repeat(np.repeat(stack.masks[index].any(axis=0), 3, 0), 3, 1)
        assert np.isfinite(sr[covered]).all() and (scale[covered] > 0).all()
        assert np.isnan(sr[~covered]).all()


def test_masked_cloud_values_have_no_influence(sample_stack, shipped_model):
    stack = crop(sample_stack)
    k = int(np.argmax(stack.clear_fraction))  # a clear frame: the cloud below is new there
    assert stack.masks[k, 10:30, 5:25].all()
    frames, masks = stack.frames.copy(), stack.masks.copy()
    masks[k, 10:30, 5:25] = False
    bright, dark = frames.copy(), frames.copy()
    bright[k, 10:30, 5:25] = 9000.0
    dark[k, 10:30, 5:25] = 0.0
    sr_bright, _ = super_resolve(Stack.in_memory(bright, masks), shipped_model, CPU)
    sr_dark, _ = super_resolve(Stack.in_memory(dark, masks), shipped_model, CPU)
    np.testing.assert_allclose(sr_bright, sr_dark, atol=1e-3)
    # unmasked, the same cloud would leak into the SR
    sr_leak, _ = super_resolve(Stack.in_memory(bright, stack.masks), shipped_model, CPU)
    assert np.nanmean(sr_leak[30:90, 15:75]) > np.nanmean(sr_bright[30:90, 15:75]) + 50


def test_pixels_cloudy_in_every_frame_are_nodata(sample_stack, shipped_model):
    stack = crop(sample_stack, 30)
    masks = stack.masks.copy()
    masks[:, :5, :7] = False
    sr, scale = super_resolve(Stack.in_memory(stack.frames, masks), shipped_model, CPU)
    assert np.isnan(sr[:15, :21]).all() and np.isnan(scale[:15, :21]).all()
    assert np.isfinite(sr[15:, :]).all()


def test_a_fresh_deconvolution_piunet_starts_as_the_classical_registered_mean_wiener(holdout_stack, monkeypatch):
    """With ``deconv_kernel`` the untrained network computes the classical pipeline (masked mean
    of the registered frames, bicubic, Wiener), so training starts from it, not from scratch."""
    from misr_engine.evaluation.baselines import bicubic_masked_mean, registered_mean_wiener
    from misr_engine.evaluation.metrics import cpsnr

    monkeypatch.setattr(consistency, "CONSISTENCY_STEPS", 0)  # the network's own output, not the engine's step after it
    stack = Stack.in_memory(holdout_stack.frames, holdout_stack.masks)
    model = PIUnet(PIUnetConfig(n_feat=8, n_tefa=1, bottleneck=2, phase_inputs=True, deconv_kernel=21)).eval()
    sr, _ = super_resolve(stack, model, CPU)
    hr = holdout_stack.hr / 10000.0
    fresh = cpsnr(sr / 10000.0, hr)
    wiener = cpsnr(registered_mean_wiener(stack.frames, stack.masks) / 10000.0, hr)
    bicubic = cpsnr(bicubic_masked_mean(stack.frames, stack.masks) / 10000.0, hr)
    assert abs(fresh - wiener) < 0.3 and fresh > bicubic + 1.0


def test_the_sub_pixel_phases_reach_the_network_and_travel_with_their_frames():
    torch.manual_seed(0)
    model = PIUnet(PIUnetConfig(n_feat=8, n_tefa=1, bottleneck=2, phase_inputs=True)).eval()
    frames, masks = torch.randn(1, 5, 12, 12), (torch.rand(1, 5, 12, 12) > 0.2).float()
    phases = torch.rand(1, 5, 2) - 0.5
    order = torch.tensor([2, 4, 0, 1, 3])
    with torch.no_grad():
        mean, _ = model(frames, masks, phases)
        permuted, _ = model(frames[:, order], masks[:, order], phases[:, order])
        other, _ = model(frames, masks, phases.flip(1))
    assert torch.allclose(mean, permuted, atol=1e-5)
    assert not torch.allclose(mean, other, atol=1e-4)


@pytest.mark.parametrize("addition, last_layer", [
    (dict(refine_features=6), lambda model: model.refinement.layers[-1]),
    (dict(detail_features=6, detail_blocks=2), lambda model: model.detail.tail),
])
def test_a_new_sr_refinement_changes_nothing_until_trained_then_acts_on_the_sr(addition, last_layer):
    torch.manual_seed(0)
    config = dict(n_feat=8, n_tefa=1, bottleneck=2, phase_inputs=True, deconv_kernel=7)
    plain = PIUnet(PIUnetConfig(**config)).eval()
    refined = PIUnet(PIUnetConfig(**config, **addition)).eval()
    refined.load_state_dict(plain.state_dict(), strict=False)  # as a warm start does
    frames, masks = torch.randn(1, 4, 10, 10), (torch.rand(1, 4, 10, 10) > 0.2).float()
    phases = torch.rand(1, 4, 2) - 0.5
    with torch.no_grad():
        assert torch.equal(plain(frames, masks, phases)[0], refined(frames, masks, phases)[0])
        torch.nn.init.normal_(last_layer(refined).weight, std=0.1)
        assert not torch.allclose(plain(frames, masks, phases)[0], refined(frames, masks, phases)[0], atol=1e-3)
