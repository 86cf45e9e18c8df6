"""Self-supervised test-time fine-tuning on the scene itself (Impieri, Valsesia, Bianchi and
Magli, IGARSS 2024), adapted to a supervised network.

Each step leaves one mostly clear frame out, super-resolves the scene from the others, observes
the SR as that frame would have (the frame's own PSF, the frame's sub-pixel phase, 3 x 3 pixel
integration, its gain and offset: ``models.backprojection``) and takes an Adam step on the L1
difference over the frame's clear pixels, for the network's weights and for that frame's PSF
(as the paper's kernel latents: acquisitions differ in blur; each PSF starts as the network's
learnt one, or a Gaussian, and stays positive and normalised through a softmax). The SR never
sees the frame it is scored against, so the network cannot simply copy it; the frames it adapts
to are the scene's own. The weights are tuned on a copy, on the central window of the scene
only, then run on every tile.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch

from ..models.backprojection import PSF_SIGMA, PSF_SIZE, blur, gain_and_offset, gaussian_kernel
from ..models.sampling import observe_at_phases

DEFAULT_LEARNING_RATE = 1e-5
PSF_LEARNING_RATE = 1e-2  # for the per-frame PSF logits
TTF_WINDOW = 96  # LR pixels: the central window the network is tuned on
MIN_FRAMES = 3  # one left out, at least two to super-resolve it from
MAX_STEPS = 1000  # --ttf-steps above this are refused (about 2 s a step on 2 CPU cores: 35 minutes)
MIN_CLEAR_FRACTION = 0.5  # frames clearer than this are left out in turn
BORDER = 2  # LR pixels at the window's edge not scored (the SR's border lacks context)

StepCallback = Callable[[int, float], None]


def held_out_order(masks: np.ndarray) -> list[int]:
    """The frames to leave out in turn: the mostly clear ones (or the clearest), clearest first."""
    clear = masks.reshape(len(masks), -1).mean(axis=1)
    order = [int(i) for i in np.argsort(-clear, kind="stable")]
    return [i for i in order if clear[i] >= MIN_CLEAR_FRACTION] or order[:1]


def network_psf(model: torch.nn.Module, device: torch.device) -> torch.Tensor:
    """The PSF the network's back-projection learnt, or the Gaussian it starts from."""
    backprojection = getattr(model, "backprojection", None)
    if backprojection is not None:
        return backprojection.kernels()[0]
    return torch.from_numpy(gaussian_kernel(PSF_SIZE, PSF_SIGMA))[None, None].to(device)


def as_batch(frames: np.ndarray, masks: np.ndarray, phases: np.ndarray,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(T,H,W), (T,H,W), (T,2) arrays -> float tensors with a batch axis of 1 on `device`."""
    return tuple(torch.from_numpy(np.ascontiguousarray(a, np.float32))[None].to(device)
                 for a in (frames, masks, phases))


class FramePSFs(torch.nn.Module):
    """One learnable PSF per frame, as softmax logits (positive, summing to 1)."""

    def __init__(self, psf: torch.Tensor, count: int):
        super().__init__()
        self.logits = torch.nn.Parameter(psf.detach().clamp(min=1e-6).log().repeat(count, 1, 1, 1))

    def forward(self, k: int) -> torch.Tensor:
        logits = self.logits[k:k + 1]
        return torch.softmax(logits.flatten(), dim=0).reshape(logits.shape)


def leave_one_out_loss(model: torch.nn.Module, frames: torch.Tensor, masks: torch.Tensor,
                       phases: torch.Tensor, k: int, psf: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference, over frame `k`'s clear pixels away from the border, between
    frame `k` and the SR of the other frames observed as frame `k` through `psf` (1,1,K,K), gain
    and offset matched. In the frame's units: in the SR's, shrinking the SR's contrast would
    shrink the error too."""
    keep = [i for i in range(frames.shape[1]) if i != k]
    sr, _ = model(frames[:, keep], masks[:, keep], phases[:, keep])
    observed = observe_at_phases(blur(sr, psf), phases[:, k:k + 1])
    weight = torch.zeros_like(masks[:, k:k + 1])
    weight[..., BORDER:weight.shape[-2] - BORDER, BORDER:weight.shape[-1] - BORDER] = 1.0
    weight = weight * masks[:, k:k + 1]
    gain, offset = gain_and_offset(frames[:, k:k + 1], observed, weight)
    residual = weight * (frames[:, k:k + 1] - gain * observed - offset)
    return residual.abs().sum() / weight.sum().clamp(min=1.0)


def finetune_on_scene(model: torch.nn.Module, frames: np.ndarray, masks: np.ndarray, phases: np.ndarray,
                      steps: int, device: torch.device, learning_rate: float = DEFAULT_LEARNING_RATE,
                      on_step: StepCallback | None = None) -> torch.nn.Module:
    """A copy of `model` tuned for `steps` steps on one scene: normalised frames and masks
    (T,H,W), sub-pixel phases (T,2). `on_step` hears each step's number and loss."""
    if len(frames) < MIN_FRAMES:
        raise ValueError(f"test-time fine-tuning needs at least {MIN_FRAMES} frames, got {len(frames)}")
    tuned = copy.deepcopy(model).to(device).eval()  # eval: BatchNorm keeps its training statistics
    psfs = FramePSFs(network_psf(tuned, device), len(frames)).to(device)
    optimiser = torch.optim.Adam([{"params": tuned.parameters(), "lr": learning_rate},
                                  {"params": psfs.parameters(), "lr": PSF_LEARNING_RATE}])
    x, m, p = as_batch(frames, masks, phases, device)
    order = held_out_order(masks)
    for step in range(steps):
        k = order[step % len(order)]
        with torch.enable_grad():
            loss = leave_one_out_loss(tuned, x, m, p, k, psfs(k))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        if on_step:
            on_step(step + 1, float(loss.detach()))
    return tuned.eval()
