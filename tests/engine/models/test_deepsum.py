"""DeepSUM's promises: RegNet registers known sub-pixel shifts, clouds are inpainted from the
other frames without leaking, the order of equally clear frames does not matter, any number of
frames runs, the ONNX export matches torch, and the shipped weights beat bicubic + masked mean
on the real sample scene."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from misr_engine import SCALE
from misr_engine.datasets.simulate import SENTINEL2, degrade
from misr_engine.evaluation.baselines import bicubic_masked_mean
from misr_engine.evaluation.metrics import best_alignment, cpsnr
from misr_engine.inference.tiled import super_resolve
from misr_engine.models.deepsum import (DeepSUM, DeepSUMConfig, delta_filters, filter_centroids,
                                        fit_calibration, global_dynamic_convolution, mutual_inpainting,
                                        prealignment_phases, window_slots)
from misr_engine.models.sampling import resample_at_phases
from misr_engine.models.weights import load_model
from misr_engine.rasters.bands import read_band
from misr_engine.rasters.stack import Stack
from misr_engine.resources import sample_dir
from tests.rasters import HOLDOUT_HR

CPU = torch.device("cpu")
RANGE = 10000.0  # Sentinel-2 digital numbers per unit reflectance
SMALL = DeepSUMConfig(n_frames=5, sisr_features=8, sisr_layers=2, regnet_features=8, fusion_features=8)
ORDER_TOLERANCE = 1e-4
"""Largest change of the SR when equally clear frames are given in another order, as a fraction of
the SR's standard deviation: the order is decided by the frames' content (cloud fraction, phase,
sharpness), so only float summation order differs."""


@pytest.fixture(scope="module")
def deepsum() -> DeepSUM:
    return load_model("deepsum").model


def fourier_shifted(image: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """`image` moved by `shift` (dy, dx) px: the value at q is the input's at q - shift."""
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), shift)).real


def small_model(seed: int = 0) -> DeepSUM:
    """An untrained small DeepSUM whose FusionNet output is not zero (so every part counts)."""
    torch.manual_seed(seed)
    model = DeepSUM(SMALL).eval()
    with torch.no_grad():
        model.fusionnet.out.weight.normal_()
    return model


def crop(stack: Stack, size: int) -> Stack:
    return Stack.in_memory(stack.frames[:, :size, :size], stack.masks[:, :size, :size])


# --- RegNet and the global dynamic convolution ------------------------------------------------


def test_a_delta_filter_at_the_true_residual_shift_registers_a_known_subpixel_shift():
    scene = ndimage.gaussian_filter(np.random.default_rng(0).standard_normal((40, 40)), 2.0)
    phase = np.array([0.2, -0.1])  # LR px: 0.6 and -0.3 HR px, rounded to 1 and 0, residual -0.4, -0.3
    frames = torch.tensor(np.stack([scene, fourier_shifted(scene, phase)])[None], dtype=torch.float32)
    phases = torch.tensor(np.stack([[0.0, 0.0], phase])[None], dtype=torch.float32)
    prealigned = prealignment_phases(phases)
    residual = SCALE * (phases - prealigned)[:, 1:]
    np.testing.assert_allclose(residual[0, 0].numpy(), [-0.4, -0.3], atol=1e-5)
    bicubic = resample_at_phases(frames, prealigned, "bicubic")

    def error(offset: torch.Tensor) -> float:
        filters = delta_filters(offset, 9).reshape(1, 1, 9, 9)
        registered = global_dynamic_convolution(bicubic[:, 1:, None], filters)[:, 0, 0]
        return float((registered - bicubic[:, 0])[..., 6:-6, 6:-6].abs().mean())
    assert error(residual) < 0.4 * error(torch.zeros_like(residual))
    assert error(residual) < 0.2 * error(-residual)
    np.testing.assert_allclose(filter_centroids(delta_filters(residual, 9).reshape(1, 1, 9, 9)).numpy(),
                               residual.numpy(), atol=1e-6)


@pytest.mark.slow
def test_regnet_pretraining_towards_delta_filters_learns_to_recover_subpixel_shifts():
    """RegNet's cross-entropy alone on pairs with known shifts (the paper's pretraining, with the
    whole-pixel jitter our configs use): its filters' centroids then land on the true residual
    shifts. 1000 steps, about 3 minutes on one core."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = DeepSUM(DeepSUMConfig(n_frames=3, sisr_features=8, sisr_layers=2, regnet_features=16,
                                  fusion_features=4, regnet_weight=1.0, regnet_jitter=1))

    def batch(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        scenes = [ndimage.gaussian_filter(rng.standard_normal((16, 16)), 1.2) for _ in range(count)]
        phases = rng.uniform(-0.5, 0.5, (count, 2))
        frames = np.stack([np.stack([s, fourier_shifted(s, p)]) for s, p in zip(scenes, phases)])
        return (torch.tensor(frames / np.std(frames), dtype=torch.float32),
                torch.tensor(np.stack([np.zeros_like(phases), phases], axis=1), dtype=torch.float32))

    def centroid_error(frames: torch.Tensor, phases: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            filters, offsets = model.registration_filters(frames, torch.ones_like(frames), phases)
        return (float((filter_centroids(filters[:, 1]) - offsets[:, 1]).abs().mean()),
                float(offsets[:, 1].abs().mean()))
    test_frames, test_phases = batch(32)
    before, truth = centroid_error(test_frames, test_phases)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(1000):
        frames, phases = batch(8)
        logits, offsets, _ = model.regnet_logits(frames, torch.ones_like(frames), phases)
        model._regnet_terms = (logits[:, 1:], offsets[:, 1:])
        loss = model.auxiliary_loss()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after, _ = centroid_error(test_frames, test_phases)
    print(f"centroid error: before {before:.3f}, after {after:.3f} HR px (residual shifts {truth:.3f} HR px)")
    assert after < 0.6 * truth and after < 0.6 * before  # measured 0.092 against 0.242 and 0.242


@pytest.mark.xfail(strict=True, reason="the CPU-trained weights' RegNet is not content-adaptive: centroid "
                   "error 0.224 HR px for residual shifts of 0.224 HR px (it learned a fixed filter; see the card)")
def test_shipped_regnet_recovers_known_subpixel_shifts_on_a_real_scene(deepsum):
    """Frames of the held-out crop with known shifts and no clouds: RegNet's filters should move
    them by the true residual shift, to a fraction of an HR pixel."""
    hr = read_band(str(HOLDOUT_HR))[0]
    errors, truths = [], []
    for seed in range(4):
        stack = degrade(hr, 6, np.random.default_rng(seed), SENTINEL2)
        phases = stack.shifts - stack.shifts[:1]  # where frame 0's content sits in each frame
        frames = (stack.frames - stack.frames.mean()) / stack.frames.std()
        with torch.no_grad():
            filters, offsets = deepsum.registration_filters(
                torch.tensor(frames[None], dtype=torch.float32), torch.ones(1, *frames.shape),
                torch.tensor(phases[None], dtype=torch.float32))
        errors.append((filter_centroids(filters[0, 1:]) - offsets[0, 1:]).abs().numpy())
        truths.append(offsets[0, 1:].abs().numpy())
    error, truth = float(np.mean(errors)), float(np.mean(truths))
    print(f"RegNet centroid error {error:.3f} HR px, residual shifts {truth:.3f} HR px on average")
    assert error < 0.5 * truth


# --- clouds ----------------------------------------------------------------------------------------


def test_mutual_inpainting_fills_from_the_first_clear_frame_in_order():
    values = torch.arange(1.0, 5.0)[None, :, None, None, None].expand(1, 4, 1, 6, 6).clone()
    clear = torch.ones(1, 4, 6, 6)
    clear[0, 0, :3] = 0  # the reference is cloudy in the top half...
    clear[0, 1, :2] = 0  # ...and so is frame 1 in the top third
    clear[0, 2, 4:] = 0
    clear[:, :, 0, 0] = 0  # no frame is clear here
    filled = mutual_inpainting(values, clear)[0, :, 0]
    assert (filled[0, 2, 1:] == 2).all() and (filled[0, :2, 1:] == 3).all()  # frame 1, else frame 2
    assert (filled[2, 4:] == 1).all()  # frame 2's cloud comes from the reference
    assert (filled[1, :2, 1:] == 3).all()
    assert all(filled[t, 0, 0] == t + 1 for t in range(4))  # nowhere clear: own values
    assert (filled[3] == 4).all()


def test_values_under_a_mask_never_reach_the_networks_output():
    model = small_model()
    frames = torch.randn(1, 6, 24, 24)
    masks = torch.ones(1, 6, 24, 24)
    masks[0, 0, 5:15, 6:18] = 0  # a cloud in the clearest frame...
    masks[0, 3, 10:20, 2:12] = 0  # ...and in another
    phases = torch.rand(1, 6, 2, generator=torch.Generator().manual_seed(1)) - 0.5
    outputs = []
    for radiance in (50.0, -20.0):
        cloudy = torch.where(masks > 0, frames, torch.full_like(frames, radiance))
        with torch.no_grad():
            outputs.append(model(cloudy, masks, phases))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])


def test_a_cloud_in_one_frame_is_filled_from_the_others_and_its_radiance_never_leaks(holdout_stack, deepsum):
    frames, masks = holdout_stack.frames[:, :48, :48].copy(), holdout_stack.masks[:, :48, :48].copy()
    hr = holdout_stack.hr[:144, :144]
    reference = int(np.argmax(masks.mean(axis=(1, 2))))
    clear_sr, _ = super_resolve(Stack.in_memory(frames, masks), deepsum, CPU)
    cloud = np.zeros(masks.shape[1:], bool)
    cloud[12:30, 14:34] = True
    cloudy_masks = masks.copy()
    cloudy_masks[reference][cloud] = False
    outputs = []
    for radiance in (5.0, 0.2):  # a bright cloud, then a dark shadow, at the same place
        cloudy = frames.copy()
        cloudy[reference][cloud] = radiance * frames.mean()
        outputs.append(super_resolve(Stack.in_memory(cloudy, cloudy_masks), deepsum, CPU)[0])
    # the cloud's radiance does not reach the output at all
    assert np.nanmax(np.abs(outputs[0] - outputs[1])) < 1e-3 * np.nanstd(clear_sr)
    # under the cloud, the result is nearly as good as without it (the other frames saw the
    # ground); errors after the cPSNR alignment
    inside = np.repeat(np.repeat(cloud, SCALE, 0), SCALE, 1)[3:-3, 3:-3]
    error_cloudy, error_clear = (float(np.abs(best_alignment(sr, hr).error)[inside].mean())
                                 for sr in (outputs[0], clear_sr))
    print(f"mean |error| under the cloud: {error_cloudy:.1f} DN, without it {error_clear:.1f} DN")
    assert error_cloudy < 1.15 * error_clear


# --- frame order and frame counts -------------------------------------------------------------------


def test_order_of_equally_clear_frames_changes_the_result_by_less_than_the_tolerance(holdout_stack, deepsum):
    frames = holdout_stack.frames[:, :64, :64]  # large enough to register (40 px gave shifts of 20 px)
    masks = np.ones(frames.shape, bool)  # all equally clear: the order is decided by content alone
    sr, scale = super_resolve(Stack.in_memory(frames, masks), deepsum, CPU)
    for order in (np.array([4, 2, 7, 0, 5, 1, 8, 6, 3]), np.arange(9)[::-1]):
        sr_p, scale_p = super_resolve(Stack.in_memory(frames[order], masks[order]), deepsum, CPU)
        assert np.max(np.abs(sr_p - sr)) < ORDER_TOLERANCE * np.std(sr)
        assert np.max(np.abs(np.log(scale_p / scale))) < 1e-3


def test_network_output_does_not_depend_on_frame_order_with_clouds():
    model = small_model()
    frames = torch.randn(1, 7, 20, 20)
    masks = (torch.rand(1, 7, 20, 20) > 0.3).float()
    phases = torch.rand(1, 7, 2) - 0.5
    order = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    with torch.no_grad():
        mean, log_scale = model(frames, masks, phases)
        mean_p, log_scale_p = model(frames[:, order], masks[:, order], phases[:, order])
        other, _ = model(frames.flip(-1), masks, phases)
    assert torch.allclose(mean, mean_p, atol=1e-5) and torch.allclose(log_scale, log_scale_p, atol=1e-4)
    assert not torch.allclose(mean, other, atol=1e-3)  # the check can fail


def test_window_slots_keep_the_clearest_reference_and_cover_all_frames():
    def slots(count: int, n: int, passes: int) -> list[list[int]]:
        return window_slots(torch.ones(1, count, 2, 2), n, passes).tolist()
    assert slots(15, 9, 3) == [[0, 1, 2, 3, 4, 5, 6, 7, 8], [0, 4, 5, 6, 7, 8, 9, 10, 11],
                               [0, 7, 8, 9, 10, 11, 12, 13, 14]]  # sliding windows, the first = N clearest
    assert slots(4, 5, 2) == [[0, 1, 2, 3, 1], [0, 2, 3, 1, 2]]  # fewer than N: repeated cyclically
    assert slots(1, 5, 2) == [[0, 0, 0, 0, 0]] * 2


@pytest.mark.parametrize("count", [1, 2, 13])
def test_any_number_of_frames_gives_a_full_x3_result(sample_stack, count):
    stack = crop(sample_stack, 24)
    index = np.arange(count) % len(stack.frames)
    if count == 1:
        index = np.array([int(np.argmax(stack.clear_fraction))])
    sr, scale = super_resolve(Stack.in_memory(stack.frames[index], stack.masks[index]), small_model(), CPU)
    assert sr.shape == scale.shape == (72, 72)
    covered = np.repeat(np.repeat(stack.masks[index].any(axis=0), SCALE, 0), SCALE, 1)
    assert np.isfinite(sr[covered]).all() and (scale[covered] > 0).all()
    assert np.isnan(sr[~covered]).all()


# --- export, uncertainty ------------------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_export_matches_torch_for_any_number_of_frames(tmp_path, holdout_stack, deepsum):
    pytest.importorskip("onnxruntime")
    from misr_engine.inference.backends import OnnxRunner
    from misr_engine.inference.onnx_export import export_onnx
    path = tmp_path / "deepsum.onnx"
    export_onnx("deepsum", None, path)
    stack = Stack.in_memory(holdout_stack.frames[:, :40, :56], holdout_stack.masks[:, :40, :56])
    sr_torch, scale_torch = super_resolve(stack, deepsum, CPU, tile_size=32, overlap=8)
    sr_onnx, scale_onnx = super_resolve(stack, OnnxRunner(path, "cpu"), None, tile_size=32, overlap=8)
    data_range = float(np.nanmax(sr_torch) - np.nanmin(sr_torch))
    assert np.nanmax(np.abs(sr_onnx - sr_torch)) <= 1e-3 * data_range
    assert np.nanmax(np.abs(scale_onnx - scale_torch) / scale_torch) <= 1e-2
    runner = OnnxRunner(path, "cpu")  # one export, any T (fewer and more than N)
    for count in (1, 12):
        x = np.random.default_rng(count).standard_normal((1, count, 16, 20)).astype(np.float32)
        m, p = np.ones_like(x), np.zeros((1, count, 2), np.float32)
        with torch.no_grad():
            mean, _ = deepsum(*map(torch.from_numpy, (x, m, p)))
        np.testing.assert_allclose(runner(x, m, p)[:, :1], mean.numpy(), atol=1e-4)


def test_calibration_fit_recovers_the_expected_absolute_error():
    rng = np.random.default_rng(0)
    features = np.column_stack([np.ones(20000), rng.normal(-3, 1, 20000), rng.normal(-2, 1, 20000),
                                rng.random(20000)])
    truth = np.array([-1.0, 0.5, 0.3, 1.0])
    errors = np.abs(rng.laplace(0.0, np.exp(features @ truth)))
    fitted = fit_calibration(torch.tensor(features), torch.tensor(errors)).numpy()
    np.testing.assert_allclose(fitted, truth, atol=0.05)


# --- quality ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_shipped_deepsum_beats_bicubic_of_the_masked_mean_on_the_real_sample_scene(sample_stack, deepsum):
    """The embedded sample: real Sentinel-2 B08 frames with their cloud masks, and the real
    10 m image as the reference."""
    stack = sample_stack
    hr = read_band(str(sample_dir() / "reference_hr.tif"))[0].astype(np.float32)
    sr, _ = super_resolve(stack, deepsum, CPU)
    deepsum_db = cpsnr(sr / RANGE, hr / RANGE)
    bicubic_db = cpsnr(bicubic_masked_mean(stack.frames, stack.masks) / RANGE, hr / RANGE)
    print(f"sample cPSNR: DeepSUM {deepsum_db:.2f} dB, bicubic + masked mean {bicubic_db:.2f} dB")
    assert deepsum_db > bicubic_db + MARGIN_DB


MARGIN_DB = 2.0
"""DeepSUM's margin over bicubic + masked mean asserted on the sample scene (measured +2.71 dB: 35.39 against 32.68 dB; the issue asks for +2.0)."""
