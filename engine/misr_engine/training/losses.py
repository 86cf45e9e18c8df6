"""Training losses: a pixel loss (L1, MSE, Laplace NLL, UDL) applied in one of two ways.

* `compensated_loss`, as the Proba-V score: the SR is cropped by `border` pixels and compared
  with every HR crop shifted by 0..2*border pixels; at each position the brightness bias (mean
  HR - SR over clear HR pixels) is removed; the best position counts (Molini et al., DeepSUM;
  Valsesia & Magli, PIUnet). For targets whose grid and radiometry are not the SR's (real
  LR/HR pairs such as Proba-V).
* `aligned_loss`: the SR against a target on its own grid and in its radiometry (simulated
  stacks, ``datasets.simulate.reference_target``): no shift search and no brightness correction,
  so the training holds the output's level and position. Only the outer `border` pixels are left
  out (their context is mirrored).

Masked HR pixels never count.
"""

from __future__ import annotations

from typing import Callable

import torch

PixelLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (error, log_scale) -> map


def l1(error: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    return error.abs()


def mse(error: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """The squared error: compensated, the cMSE of the cPSNR (DeepSUM's loss)."""
    return error * error


def laplace_nll(error: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of a Laplace(mean, e^s) (up to log 2): s + |e| e^-s."""
    return log_scale + error.abs() * torch.exp(-log_scale)


def uncertainty_weighted_l1(error: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """UDL (Ning et al.): |e| weighted by s - min(s), the uncertainty detached from the graph.

    The paper freezes the uncertainty after its L_EU stage; here the log-scale head keeps
    learning the Laplace NLL of the (detached) error, so the uncertainty stays calibrated to the
    SR as it improves, without that term pulling on the SR itself.
    """
    s = log_scale.detach()
    weight = s - s.amin(dim=(-2, -1), keepdim=True)
    return weight * error.abs() + laplace_nll(error.detach(), log_scale)


LOSSES: dict[str, PixelLoss] = {"l1": l1, "mse": mse, "nll": laplace_nll, "udl": uncertainty_weighted_l1}


def compensated_loss(pixel_loss: PixelLoss, mean: torch.Tensor, log_scale: torch.Tensor,
                     hr: torch.Tensor, hr_mask: torch.Tensor, border: int = 3) -> torch.Tensor:
    """Mean over the batch of the best-position, bias-corrected masked loss. Tensors (B,1,H,W)."""
    height, width = mean.shape[-2:]
    sr = mean[..., border:height - border, border:width - border]
    s = log_scale[..., border:height - border, border:width - border]
    h, w = sr.shape[-2:]
    per_position = []
    for u in range(2 * border + 1):
        for v in range(2 * border + 1):
            target = hr[..., u:u + h, v:v + w]
            clear = hr_mask[..., u:u + h, v:v + w]
            count = clear.sum(dim=(-2, -1)).clamp_min(1.0)
            bias = ((target - sr) * clear).sum(dim=(-2, -1), keepdim=True) / count[..., None, None]
            loss_map = pixel_loss(target - sr - bias, s) * clear
            per_position.append(loss_map.sum(dim=(-2, -1)) / count)
    return torch.stack(per_position, dim=-1).amin(dim=-1).mean()


def aligned_loss(pixel_loss: PixelLoss, mean: torch.Tensor, log_scale: torch.Tensor,
                 hr: torch.Tensor, hr_mask: torch.Tensor, border: int = 3) -> torch.Tensor:
    """Mean over the batch of the masked loss of the SR against its aligned target (B,1,H,W)."""
    inner = (..., slice(border, mean.shape[-2] - border), slice(border, mean.shape[-1] - border))
    clear = hr_mask[inner]
    loss_map = pixel_loss(hr[inner] - mean[inner], log_scale[inner]) * clear
    return (loss_map.sum(dim=(-2, -1)) / clear.sum(dim=(-2, -1)).clamp_min(1.0)).mean()
