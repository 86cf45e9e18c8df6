"""``sampling``'s resampling at sub-pixel phases, computed as 1-D passes.

A frame's phase is one shift for the whole frame, so the bicubic (Keys, a = -0.75, as
grid_sample) and bilinear interpolations of ``sampling`` are separable: a row pass then a
column pass, each a few taps whose weights are the same for every pixel of a frame (three sets,
one per HR sub-row, when an LR frame is put on the HR grid). Edges are replicated, as
grid_sample's border padding does. Re-observing an HR image fuses the move with the 3 x 3 block
mean: each pass reads every third position only.

Same operators as ``sampling.resample_at_phases`` / ``observe_at_phases`` (within grid_sample's
float32 coordinate rounding, about 2e-6 of the signal), faster on the CPU (a 128-pixel tile of 9
frames, one thread: resampling 2.1x, re-observing 4.8x), but not
exportable to ONNX opset 17 (data-dependent taps): the network keeps the grid forms, and code
that is never exported (the consistency step's back-projection) uses these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import SCALE

CUBIC_A = -0.75
"""Keys' cubic convolution parameter, grid_sample's."""


def _tap_weights(fraction: torch.Tensor, mode: str) -> torch.Tensor:
    """(N, taps) weights of the taps from floor(x) - 1 (bicubic, 4 taps) or floor(x) (bilinear, 2)
    for positions whose fractional part is `fraction` (N,)."""
    if mode == "bilinear":
        return torch.stack([1.0 - fraction, fraction], -1)
    if mode != "bicubic":
        raise ValueError(f"unknown interpolation: {mode}")
    a = CUBIC_A

    def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return torch.stack([far(fraction + 1.0), near(fraction), near(1.0 - fraction), far(2.0 - fraction)], -1)


def shift_filters(shifts: torch.Tensor, mode: str) -> tuple[torch.Tensor, int]:
    """Per image, the filter f (N, 2R+1) over offsets -R..R with sum_q f[q] x[i + q] the
    interpolation of x at i + shift (`shifts` (N,), px), and R. In float64."""
    shifts = shifts.double()
    base = torch.floor(shifts)
    weights = _tap_weights(shifts - base, mode)
    first = base.long() - (1 if mode == "bicubic" else 0)
    taps = weights.shape[-1]
    reach = int(max(-int(first.min()), int(first.max()) + taps - 1, 0))
    filters = torch.zeros(len(shifts), 2 * reach + 1, dtype=torch.float64, device=shifts.device)
    return filters.scatter_(1, first[:, None] + reach + torch.arange(taps, device=shifts.device), weights), reach


def _pass(images: torch.Tensor, filters: torch.Tensor, left: int, dim: int, stride: int = 1) -> torch.Tensor:
    """(N,1,H,W) `images` filtered along `dim` (-2 rows, -1 columns) by per-image `filters` (N, K)
    whose first tap is at offset -`left`, edges replicated, kept at every `stride`-th position."""
    size, taps = images.shape[dim], filters.shape[1]
    right = taps - 1 - left
    padding = (0, 0, left, right) if dim == -2 else (left, right, 0, 0)
    padded = F.pad(images, padding, mode="replicate")
    weights = filters.to(images.dtype)[:, :, None, None, None]
    out = None
    for q in range(taps):
        view = padded.narrow(dim, q, size)
        view = view[..., ::stride, :] if dim == -2 else view[..., ::stride]
        out = view * weights[:, q] if out is None else out.addcmul_(view, weights[:, q])
    return out


def resample_at_phases(images: torch.Tensor, phases: torch.Tensor, mode: str) -> torch.Tensor:
    """(B,T,H,W) LR images sampled on the HR grid x SCALE, each moved back by its sub-pixel phase
    (B,T,2) (dy, dx in LR px): ``sampling.resample_at_phases``, in 1-D passes."""
    b, t, h, w = images.shape
    flat, phases = images.reshape(b * t, 1, h, w), phases.reshape(b * t, 2).double()
    for dim, axis in ((-2, 0), (-1, 1)):
        # HR sub-position r of LR pixel m sits at m + (r - (SCALE - 1) / 2) / SCALE + phase on the LR axis
        banks = [shift_filters(phases[:, axis] + (r - (SCALE - 1) / 2) / SCALE, mode) for r in range(SCALE)]
        reach = max(reach for _, reach in banks)
        parts = [_pass(flat, F.pad(bank, (reach - own, reach - own)), reach, dim) for bank, own in banks]
        flat = torch.stack(parts, dim=dim).flatten(dim - 1, dim)  # sub-position r of pixel m at SCALE * m + r
    return flat.reshape(b, t, SCALE * h, SCALE * w)


def observe_at_phases(hr: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """The reference-grid HR image (B,1,3H,3W) seen by every frame (B,T,2 phases): moved by the
    frame's phase (bicubic) and integrated over each LR pixel's 3x3 HR block -> (B,T,H,W):
    ``sampling.observe_at_phases``, in 1-D passes, each reading every third HR position."""
    b, t = phases.shape[:2]
    height, width = hr.shape[-2], hr.shape[-1]
    flat = hr.expand(b, t, height, width).reshape(b * t, 1, height, width)
    phases = phases.reshape(b * t, 2).double()
    box = torch.full((1, 1, SCALE), 1.0 / SCALE, dtype=torch.float64, device=hr.device)
    for dim, axis in ((-2, 0), (-1, 1)):
        shifts, reach = shift_filters(-SCALE * phases[:, axis], "bicubic")
        blocks = F.conv1d(shifts[:, None], box, padding=SCALE - 1)[:, 0]  # the move, then the block mean
        flat = _pass(flat, blocks, reach, dim, SCALE)
    return flat.reshape(b, t, height // SCALE, width // SCALE)
