"""Resampling between a frame's LR grid and the reference frame's HR grid, at sub-pixel phases.

Conventions: a frame's phase (dy, dx), in LR pixels, is where the reference frame's content
sits in that frame (``preprocess.subpixel_phase``): the frame's value at LR position q shows
the scene at reference position q - phase. Grids are built from aranges (no affine_grid) so
that everything exports to ONNX opset 17.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import SCALE

MASK_EPS = 1e-3  # weight of cloudy frames in masked means (avoids 0/0 where all are cloudy)


def masked_temporal_mean(x: torch.Tensor, weights: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of `x` over `dim` weighted by `weights` (clear = 1), plain mean where all are 0."""
    weights = weights + MASK_EPS
    return (x * weights).sum(dim) / weights.sum(dim)


def fill_cloudy(frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Replace cloudy pixels (B,T,H,W) by the clear temporal mean at that pixel."""
    mean = masked_temporal_mean(frames, masks, dim=1).unsqueeze(1)
    return torch.where(masks > 0.5, frames, mean)


def hr_centres(size: int, like: torch.Tensor) -> torch.Tensor:
    """Centres of the SCALE*size HR pixels in grid_sample's normalised coordinates (float32)."""
    return (torch.arange(SCALE * size, dtype=torch.float32, device=like.device) + 0.5) * (2.0 / (SCALE * size)) - 1.0


def _sample(images: torch.Tensor, phases: torch.Tensor, lr_shape: tuple[int, int], sign: float,
            mode: str) -> torch.Tensor:
    """Sample (N,1,*,*) images on the HR grid of an LR `lr_shape` moved by `sign` x phases (N,2).

    In float32 whatever autocast says: in bfloat16 (8 bits of mantissa) a grid coordinate near 1
    is off by up to 1/128 of the image, several HR pixels on a 128-pixel tile."""
    h, w = lr_shape
    with torch.autocast(images.device.type, enabled=False):
        phases = phases.float()
        gy = hr_centres(h, images)[None, :, None] + sign * (2.0 / h) * phases[:, 0, None, None]
        gx = hr_centres(w, images)[None, None, :] + sign * (2.0 / w) * phases[:, 1, None, None]
        grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)
        return F.grid_sample(images.float(), grid, mode=mode, padding_mode="border", align_corners=False)


def resample_at_phases(images: torch.Tensor, phases: torch.Tensor, mode: str) -> torch.Tensor:
    """(B,T,H,W) LR images sampled on the HR grid x SCALE, each moved back by its sub-pixel
    phase (B,T,2) (dy, dx in LR px), so that they all land on the reference frame's grid."""
    b, t, h, w = images.shape
    out = _sample(images.reshape(b * t, 1, h, w), phases.reshape(b * t, 2), (h, w), 1.0, mode)
    return out.reshape(b, t, SCALE * h, SCALE * w)


def observe_at_phases(hr: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """The reference-grid HR image (B,1,3H,3W) seen by every frame (B,T,2 phases): moved by the
    frame's phase (bicubic) and integrated over each LR pixel's 3x3 HR block -> (B,T,H,W).
    The sensor's blur is applied by the caller, once, before this."""
    b, t = phases.shape[:2]
    height, width = hr.shape[-2] // SCALE, hr.shape[-1] // SCALE
    moved = _sample(hr.expand(b, t, *hr.shape[-2:]).reshape(b * t, 1, *hr.shape[-2:]),
                    phases.reshape(b * t, 2), (height, width), -1.0, "bicubic")
    return F.avg_pool2d(moved, SCALE).reshape(b, t, height, width)


def registered_mean(frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor,
                    frame_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The classical registered mean on the reference's HR grid: (B,T,H,W) frames (cloudy pixels
    filled, ``fill_cloudy``) resampled bicubically at their phases (B,T,2), averaged with their
    masks resampled bilinearly, times `frame_weights` (T,) when given (e.g. inverse noise
    variances). Returns the mean (B,1,3H,3W) and the resampled masks (B,T,3H,3W)."""
    hr_frames, hr_masks = registered_frames(frames, masks, phases)
    return weighted_mean(hr_frames, hr_masks, frame_weights), hr_masks


def registered_frames(frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """`registered_mean`'s resampled frames and masks (B,T,3H,3W), for several means of them."""
    return resample_at_phases(fill_cloudy(frames, masks), phases, "bicubic"), resample_at_phases(masks, phases, "bilinear")


def weighted_mean(hr_frames: torch.Tensor, hr_masks: torch.Tensor,
                  frame_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The mean (B,1,3H,3W) of `registered_frames`, each frame weighed by its mask times `frame_weights` (T,)."""
    hr_weights = hr_masks if frame_weights is None else hr_masks * frame_weights.to(hr_masks)[:, None, None]
    return masked_temporal_mean(hr_frames, hr_weights, dim=1)[:, None]
