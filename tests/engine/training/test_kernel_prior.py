"""The flow-based kernel prior (models/kernel_prior.py) with its shipped weights, and its training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from misr_engine.training.kernel_prior import (FAMILIES, KernelPriorTrainConfig, anisotropic_gaussians,
                                               noise_kernels, train_kernel_prior)
from misr_engine.models.kernel_prior import (CENTRING_TOLERANCE, KernelPrior, KernelPriorConfig, centred_softmax,
                                             centroid, fit_latent, load_kernel_prior, pixel_offsets)
from misr_engine.models.weights import read_metadata
from misr_engine.resources import weights_dir

FIT_TOLERANCE = 0.05  # relative L2 error of a fitted held-out Gaussian (measured, 200 steps: 0.003-0.010,
# 0.025 for the widest, sigma 3.0 x 1.5 px)
FIT_STEPS = 200


@pytest.fixture(scope="module")
def prior() -> KernelPrior:
    return load_kernel_prior()


def held_out_gaussians() -> torch.Tensor:
    """Anisotropic Gaussians not drawn by the training generator: the simulator's range and beyond."""
    sigmas = torch.tensor([[0.7, 1.8], [1.2, 1.2], [1.8, 0.9], [0.5, 2.5], [3.0, 1.5], [1.0, 0.6]])
    angles = torch.tensor([0.3, 0.0, 1.1, 2.0, 0.7, 2.9])
    return anisotropic_gaussians(sigmas, angles)


def assert_valid(kernels: torch.Tensor) -> None:
    assert kernels.shape[1:] == (1, 15, 15)
    assert kernels.min() >= 0
    assert (kernels.sum(dim=(1, 2, 3)) - 1).abs().max() <= 1e-5
    assert centroid(kernels.double()).abs().max() <= CENTRING_TOLERANCE


def relative_errors(fitted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (fitted - target).flatten(1).norm(dim=1) / target.flatten(1).norm(dim=1)


def test_training_kernels_are_normalised_and_centred():
    config = KernelPriorTrainConfig(out_dir="")
    generator = torch.Generator().manual_seed(0)
    for family in FAMILIES.values():
        assert_valid(family(64, config, generator))


def test_kernels_from_random_latents_are_valid(prior):
    generator = torch.Generator().manual_seed(1)
    assert_valid(prior.sample(256, generator))


def test_centring_converges_for_far_latents_and_extreme_logits(prior):
    """Far latents give multi-peaked kernels (plain Newton steps oscillate on some of them) and
    delta-like kernels in a corner need large tilts: all come out valid and centred."""
    generator = torch.Generator().manual_seed(5)
    z = torch.randn(1024, prior.latent_size, generator=generator) * torch.linspace(1.0, 10.0, 1024)[:, None]
    assert_valid(prior.kernel(z))
    corners = torch.full((2, 225), -40.0)
    corners[0, 0] = corners[1, 224] = 0.0
    logits = torch.cat([corners, 15 * torch.randn(256, 225, generator=generator)])
    weights = centred_softmax(logits, pixel_offsets(15), prior.config.centring_iterations)
    assert_valid(weights.reshape(-1, 1, 15, 15))


def test_kernels_are_differentiable_in_the_latent(prior):
    z = prior.default_latent().requires_grad_(True)
    (prior.kernel(z)[0, 0, 7, 7]).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().max() > 0
    assert all(p.grad is None for p in prior.parameters())  # the loaded prior is frozen


def test_flow_is_invertible_with_the_exact_log_determinant(prior):
    """log_prob is a true density: the flow inverts, and its log-determinant is that of its
    Jacobian (computed by autograd)."""
    y = prior.represent(held_out_gaussians()[:1]).double()
    flow = prior.double()
    try:
        z, log_det = flow.to_latent(y)
        back, inverse_log_det = flow.from_latent(z)
        jacobian = torch.autograd.functional.jacobian(lambda v: flow.to_latent(v[None])[0][0], y[0], vectorize=True)
    finally:
        prior.float()
    torch.testing.assert_close(back, y)
    torch.testing.assert_close(inverse_log_det, -log_det)
    torch.testing.assert_close(log_det[0], torch.linalg.slogdet(jacobian)[1])


def test_prior_prefers_held_out_gaussians_to_noise(prior):
    gaussians = held_out_gaussians()
    noise = noise_kernels(16, torch.Generator().manual_seed(2))
    assert prior.log_prob(gaussians).min() > prior.log_prob(noise).max()


def test_fitting_a_latent_reproduces_held_out_gaussians(prior):
    """The prior is expressive: gradient descent on z alone reproduces kernels it never saw,
    and the fitted kernels are still valid; noise is not reproduced (the prior constrains)."""
    gaussians = held_out_gaussians()
    noise = noise_kernels(4, torch.Generator().manual_seed(3))
    targets = torch.cat([gaussians, noise])  # independent problems, solved as one batch
    fitted = prior.kernel(fit_latent(prior, targets, steps=FIT_STEPS))
    assert_valid(fitted)
    errors = relative_errors(fitted, targets)
    assert errors[:len(gaussians)].max() < FIT_TOLERANCE
    assert errors[len(gaussians):].min() > 5 * FIT_TOLERANCE


def test_default_latent_is_the_back_projection_gaussian(prior):
    from misr_engine.models.backprojection import PSF_SIGMA
    expected = anisotropic_gaussians(torch.tensor([[PSF_SIGMA, PSF_SIGMA]]), torch.zeros(1))
    assert relative_errors(prior.kernel(prior.default_latent()), expected).item() < FIT_TOLERANCE


def test_shipped_weights_are_small_and_documented():
    path = weights_dir() / "kernel_prior.safetensors"
    assert path.stat().st_size < 5_000_000
    metadata = read_metadata(path)
    assert metadata["model"] == "kernel_prior"
    config = KernelPriorConfig(**json.loads(metadata["config"]))
    assert config.kernel_size == 15
    training = json.loads(metadata["training"])
    assert training["mix"] == {"gaussian": 0.8, "motion": 0.1, "defocus": 0.1}
    assert training["sigma_range"] == [0.4, 4.0]
    assert float(metadata["training_seconds"]) > 0
    validation = json.loads(metadata["validation"])
    assert validation["gaussian"]["nll"] < validation["noise"]["nll"]
    assert "torch" in metadata and "parameters" in metadata


def test_onnx_export_matches_in_eval_mode(prior, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    z = torch.randn(5, prior.latent_size, generator=torch.Generator().manual_seed(4))
    path = tmp_path / "kernel_prior.onnx"
    torch.onnx.export(prior, (z[:2],), str(path), input_names=["z"], output_names=["kernel"],
                      dynamic_axes={"z": {0: "n"}, "kernel": {0: "n"}}, opset_version=17, dynamo=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (exported,) = session.run(None, {"z": z.numpy()})
    np.testing.assert_allclose(exported, prior.kernel(z).numpy(), atol=1e-6)


def tiny_config(out_dir) -> KernelPriorTrainConfig:
    return KernelPriorTrainConfig(out_dir=str(out_dir), steps=4, batch_size=16, val_every=1, val_count=4,
                                  projection_steps=1, calibration_count=64, plot=False,
                                  model_config={"n_blocks": 2, "hidden_size": 8})


def test_training_resumes_from_its_checkpoint_exactly(tmp_path):
    straight = train_kernel_prior(tiny_config(tmp_path / "straight"), log=lambda line: None)

    def interrupt(step: int, loss: float) -> None:
        if step == 3:  # after the checkpoint of step 2, before that of step 3
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_kernel_prior(tiny_config(tmp_path / "resumed"), log=lambda line: None, on_step=interrupt)
    lines: list[str] = []
    resumed = train_kernel_prior(tiny_config(tmp_path / "resumed"), log=lines.append)
    assert lines[0] == "resumed at step 2"
    rows = (tmp_path / "resumed" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3", "4"]
    first, second = load_kernel_prior(straight), load_kernel_prior(resumed)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    assert math.isfinite(float(rows[-1].split(",")[1]))
