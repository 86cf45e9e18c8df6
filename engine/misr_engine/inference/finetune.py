"""Self-supervised test-time fine-tuning on the scene itself (Impieri, Valsesia, Bianchi and
Magli, IGARSS 2024), keeping one frame out.

The paper minimises, over the network's weights and a kernel latent z,
``|| [F({x_t}) * G(z)]_down - x_1 ||_1`` with G the flow-based kernel prior (FKP). Here every
step leaves one mostly clear frame k out, super-resolves one window of the scene from the
others, blurs the SR by frame k's own kernel ``prior.kernel(z_k)`` (15 x 15 HR px, non-negative,
summing to one and centred by construction: it cannot absorb the frame's shift), observes it at
frame k's sub-pixel phase with the 3 x 3 pixel integration (``sampling.observe_at_phases``),
matches gain and offset, and takes one Adam step on the L1 difference over frame k's clear
pixels plus ``latent_weight`` x ||z_k||^2 / 2 (the prior's base log-density: an L1 fit alone
can reach out-of-family kernels, see the prior's card), jointly for the network's weights and
z_k. The SR never sees the frame it is scored against, so the network cannot copy it. The
prior's flow stays frozen; the network is tuned on a copy (the caller's is never modified).

Windows: up to ``TTF_WINDOWS`` windows of ``TTF_WINDOW`` LR pixels spread over the scene
(``window_origins``); steps cycle over the held-out frames, then the windows, so memory is that
of one window whatever the scene's size. The estimated kernels describe each acquisition's blur
(``kernel_report``; ``misr super-resolve --kernels-out``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..models.backprojection import PSF_SIGMA, blur, gain_and_offset
from ..models.kernel_prior import KernelPrior, load_kernel_prior
from ..models.sampling import observe_at_phases

# defaults chosen on fresh validation scenes with the shipped weights and the kernels' start
# (docs/evaluation/adaptation/ttf_learning_rate.log, 12 scenes per set, four sets): lr 1e-5 for 20
# steps gained +0.029 dB on the mean over the sets (in distribution -0.026, out of range +0.053),
# the former lr 3e-5 -0.025 (in distribution -0.120); 40 steps at 1e-5 added 0.002 dB for twice the time
# checked again with the stage 7 weights (ttf_stage7.log, fresh scenes): kept; +0.048 dB on the mean,
# lr 2e-5 +0.060 (in distribution -0.069 against -0.028), under the rule's +0.02 margin
DEFAULT_STEPS = 20  # what the plugin offers (``limits`` of ``misr models --json``)
DEFAULT_LEARNING_RATE = 1e-5  # the network's (Adam)
LATENT_LEARNING_RATE = 0.05  # the kernel latents' (Adam; FKP uses 0.5; 0.5 scored the same out of range here)
LATENT_WEIGHT = 1e-3  # of ||z||^2 / 2 beside the L1 (normalised units, per step)
TTF_WINDOW = 64  # LR pixels: the side of a fine-tuning window (96: 2.7 GB, 17 s a step on the shared CPU)
TTF_WINDOWS = 4  # at most this many windows, spread over the scene
MIN_FRAMES = 3  # one left out, at least two to super-resolve it from
MAX_STEPS = 1000  # --ttf-steps above this are refused (about 2 s a step on 2 CPU cores: 35 minutes)
MIN_CLEAR_FRACTION = 0.5  # frames clearer than this are left out in turn
BORDER = 2  # LR pixels at the window's edge not scored (the SR's border lacks context)

StepCallback = Callable[[int, float], None]


@dataclass(frozen=True)
class FineTuneSettings:
    """How a scene is fine-tuned (``misr super-resolve --ttf-steps`` and its defaults)."""

    steps: int
    learning_rate: float = DEFAULT_LEARNING_RATE
    latent_learning_rate: float = LATENT_LEARNING_RATE
    latent_weight: float = LATENT_WEIGHT


@dataclass
class FineTuned:
    """A fine-tuned copy of the network, the frames' estimated kernels (T,1,K,K) and latents
    (T,225), the frames that were left out (the others keep the initial kernel, the Gaussian of
    `start_sigma` HR px) and every step's loss."""

    model: torch.nn.Module
    kernels: np.ndarray
    latents: np.ndarray
    held_out: list[int]
    losses: list[float] = field(default_factory=list)
    start_sigma: float = PSF_SIGMA


def held_out_order(masks: np.ndarray) -> list[int]:
    """The frames to leave out in turn: the mostly clear ones (or the clearest), clearest first."""
    clear = masks.reshape(len(masks), -1).mean(axis=1)
    order = [int(i) for i in np.argsort(-clear, kind="stable")]
    return [i for i in order if clear[i] >= MIN_CLEAR_FRACTION] or order[:1]


def window_origins(height: int, width: int, size: int = TTF_WINDOW, count: int = TTF_WINDOWS) -> list[tuple[int, int]]:
    """(row, column) origins of up to `count` (1, 2 or 4) windows of `size` LR pixels spread over
    a scene: one per axis where the scene is less than 1.5 windows long, else two, centred at a
    quarter and three quarters of it; the whole scene when it fits in one window."""
    def starts(extent: int, n: int) -> list[int]:
        return [min(max(int(round(extent * (i + 0.5) / n - size / 2)), 0), max(extent - size, 0)) for i in range(n)]
    rows, cols = (1 if extent < 1.5 * size else 2 for extent in (height, width))
    while rows * cols > max(count, 1):
        rows, cols = (rows, cols - 1) if cols >= rows else (rows - 1, cols)
    return [(r, c) for r in starts(height, rows) for c in starts(width, cols)]


def as_batch(frames: np.ndarray, masks: np.ndarray, phases: np.ndarray,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(T,H,W), (T,H,W), (T,2) arrays -> float tensors with a batch axis of 1 on `device`."""
    return tuple(torch.from_numpy(np.ascontiguousarray(a, np.float32))[None].to(device)
                 for a in (frames, masks, phases))


class FrameKernels(torch.nn.Module):
    """One kernel latent per frame through the frozen prior: ``kernel(k)`` is frame k's blur,
    starting from the isotropic Gaussian of `sigma` HR px."""

    def __init__(self, prior: KernelPrior, count: int, sigma: float = PSF_SIGMA):
        super().__init__()
        self.prior = [prior]  # in a list: not a submodule, so its (frozen) weights are not tuned
        self.latents = torch.nn.Parameter(prior.default_latent(sigma).repeat(count, 1))

    def kernel(self, k: int) -> torch.Tensor:
        """Frame `k`'s kernel (1,1,K,K)."""
        return self.prior[0].kernel(self.latents[k:k + 1])

    def penalty(self, k: int) -> torch.Tensor:
        """||z_k||^2 / 2: minus the prior's base log-density of frame `k`'s latent (up to a constant)."""
        return 0.5 * (self.latents[k] ** 2).sum()

    @torch.no_grad()
    def all_kernels(self) -> torch.Tensor:
        return self.prior[0].kernel(self.latents)


def leave_one_out_loss(model: torch.nn.Module, frames: torch.Tensor, masks: torch.Tensor,
                       phases: torch.Tensor, k: int, kernel: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference, over frame `k`'s clear pixels away from the border, between
    frame `k` and the SR of the other frames blurred by `kernel` (1,1,K,K), observed at frame
    `k`'s phase, gain and offset matched. In the frame's units: in the SR's, shrinking the SR's
    contrast would shrink the error too."""
    keep = [i for i in range(frames.shape[1]) if i != k]
    sr, _ = model(frames[:, keep], masks[:, keep], phases[:, keep])
    observed = observe_at_phases(blur(sr, kernel), phases[:, k:k + 1])
    weight = torch.zeros_like(masks[:, k:k + 1])
    weight[..., BORDER:weight.shape[-2] - BORDER, BORDER:weight.shape[-1] - BORDER] = 1.0
    weight = weight * masks[:, k:k + 1]
    gain, offset = gain_and_offset(frames[:, k:k + 1], observed, weight)
    residual = weight * (frames[:, k:k + 1] - gain * observed - offset)
    return residual.abs().sum() / weight.sum().clamp(min=1.0)


def finetune_on_scene(model: torch.nn.Module, windows: Sequence[tuple[np.ndarray, np.ndarray]], phases: np.ndarray,
                      settings: FineTuneSettings, device: torch.device, prior: KernelPrior | None = None,
                      on_step: StepCallback | None = None,
                      checkpoint: Callable[[int, torch.nn.Module], None] | None = None,
                      kernel_sigma: float = PSF_SIGMA) -> FineTuned:
    """A copy of `model` and per-frame kernels tuned for `settings.steps` steps on one scene:
    `windows` of its normalised frames and masks (T,h,w) each, the frames' sub-pixel phases
    (T,2). Every frame's kernel starts as the Gaussian of `kernel_sigma` HR px. `on_step` hears
    each step's number and loss, `checkpoint` each step's number and the network as tuned so far
    (studies of the step count)."""
    count = len(phases)
    if count < MIN_FRAMES:
        raise ValueError(f"test-time fine-tuning needs at least {MIN_FRAMES} frames, got {count}")
    prior = prior if prior is not None else load_kernel_prior(device=device)
    tuned = copy.deepcopy(model).to(device).eval()  # eval: BatchNorm keeps its training statistics
    kernels = FrameKernels(prior, count, kernel_sigma).to(device)
    optimiser = torch.optim.Adam([{"params": tuned.parameters(), "lr": settings.learning_rate},
                                  {"params": kernels.parameters(), "lr": settings.latent_learning_rate}])
    batches = [as_batch(frames, masks, phases, device) for frames, masks in windows]
    order = held_out_order(np.concatenate([masks for _, masks in windows], axis=-1))
    losses = []
    for step in range(settings.steps):
        k = order[step % len(order)]
        x, m, p = batches[(step // len(order)) % len(batches)]
        with torch.enable_grad():
            loss = leave_one_out_loss(tuned, x, m, p, k, kernels.kernel(k))
            objective = loss + settings.latent_weight * kernels.penalty(k)
            optimiser.zero_grad(set_to_none=True)
            objective.backward()
            optimiser.step()
        losses.append(float(loss.detach()))
        if on_step:
            on_step(step + 1, losses[-1])
        if checkpoint:
            checkpoint(step + 1, tuned)
    held_out = sorted(set(order[:min(settings.steps, len(order))]))
    return FineTuned(tuned.eval(), kernels.all_kernels().cpu().numpy(), kernels.latents.detach().cpu().numpy(),
                     held_out, losses, kernel_sigma)


def kernel_shape(kernel: np.ndarray) -> dict[str, float]:
    """Width of a (K,K) kernel from its second moments (HR px): the standard deviations along
    its major and minor axes, the major axis' angle (degrees from the column axis, counter-
    clockwise towards up), the ellipticity 1 - minor / major and the peak value."""
    size = kernel.shape[-1]
    axis = np.arange(size) - size // 2
    dy, dx = np.meshgrid(axis, axis, indexing="ij")
    k = kernel / kernel.sum()
    my, mx = (k * dy).sum(), (k * dx).sum()
    cyy, cxx, cyx = (k * (dy - my) ** 2).sum(), (k * (dx - mx) ** 2).sum(), (k * (dy - my) * (dx - mx)).sum()
    values, vectors = np.linalg.eigh(np.array([[cyy, cyx], [cyx, cxx]]))
    minor, major = np.sqrt(np.maximum(values, 0.0))
    vy, vx = vectors[:, 1]
    return {"sigma_major": float(major), "sigma_minor": float(minor),
            "angle_deg": float(np.degrees(np.arctan2(-vy, vx)) % 180.0),
            "ellipticity": float(1.0 - minor / major) if major > 0 else 0.0, "peak": float(k.max())}


def kernel_report(result: FineTuned, frame_names: Sequence[str], phases: np.ndarray) -> dict:
    """The estimated kernels as JSON-ready data: per frame its file, sub-pixel phase, whether it
    was left out (estimated) or kept its initial kernel, the kernel's shape and its values."""
    frames = []
    for index, name in enumerate(frame_names):
        kernel = result.kernels[index, 0]
        frames.append({"frame": name, "phase_lr_px": [round(float(v), 4) for v in phases[index]],
                       "estimated": index in result.held_out, **kernel_shape(kernel),
                       "latent_norm": float(np.linalg.norm(result.latents[index])),
                       "kernel": np.round(kernel.astype(np.float64), 7).tolist()})
    return {"kernel_size": int(result.kernels.shape[-1]),
            "units": "HR pixels (one third of an input pixel); the optical blur before the 3 x 3 pixel integration",
            "initial_sigma": result.start_sigma,
            "steps": len(result.losses), "final_loss": result.losses[-1] if result.losses else None,
            "frames": frames}
