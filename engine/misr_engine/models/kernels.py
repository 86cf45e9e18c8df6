"""Convolution kernels held to their physics by construction.

* `PointSpreadFunction`: a blur kernel that is non-negative, sums to one and is centred (point
  symmetric: k(x) = k(-x), so its first moment is the centre pixel): a softmax over learnable
  logits, symmetrised. It can blur, never shift (shifts are the registration's) and never
  change the level.
* `UnitGainFilter`: a point-symmetric filter whose coefficients sum to exactly one (DC gain 1):
  it may sharpen (negative lobes), never shift nor change the level (a deconvolution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def point_symmetric(kernel: torch.Tensor) -> torch.Tensor:
    """The mean of a (..., K, K) kernel and its 180-degree rotation."""
    return 0.5 * (kernel + kernel.flip(-1, -2))


class PointSpreadFunction(nn.Module):
    """`count` learnable K x K blur kernels (count, 1, K, K), started at `initial` (1, 1, K, K)."""

    def __init__(self, initial: torch.Tensor, count: int = 1):
        super().__init__()
        self.logits = nn.Parameter(initial.clamp(min=1e-8).log().expand(count, *initial.shape[1:]).clone())

    def forward(self) -> torch.Tensor:
        count, _, size, _ = self.logits.shape
        kernel = torch.softmax(self.logits.reshape(count, -1), dim=-1).reshape(count, 1, size, size)
        return point_symmetric(kernel)


class UnitGainFilter(nn.Module):
    """A learnable K x K filter applied with replicate padding; its effective kernel is the
    point-symmetric part of `weight` divided by its sum (DC gain exactly 1)."""

    def __init__(self, initial: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(initial.clone())

    def kernel(self) -> torch.Tensor:
        symmetric = point_symmetric(self.weight)
        return symmetric / symmetric.sum()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pad = self.weight.shape[-1] // 2
        return F.conv2d(F.pad(image, [pad] * 4, mode="replicate"), self.kernel())
