"""PIUnet: permutation-invariant multi-image super-resolution with a Laplace uncertainty head.

Valsesia & Magli, "Permutation invariance and uncertainty in multitemporal image
super-resolution", IEEE TGRS 2022. The blocks mirror the paper's figure:

    frames -> CNR-SA head -> N x TEFA -> CNR-SA -> (+ long skip) -> TERN -> temporal mean
           -> mean head (conv + pixel shuffle x3, + upsampled temporal mean)
           -> log-scale head (bilinear x3, conv-BN-LReLU-conv)

Every layer before the temporal mean is temporally equivariant (2D convolutions shared over
frames, self-attention over time without positional encoding), so the output does not depend
on the order of the frames and any number of frames works.

Masks (our addition, not in the paper): each frame enters as two channels, its values (cloudy
pixels filled with the clear temporal mean, see ``fill_cloudy``) and its clear mask; the
attention down-weights cloudy frames as keys, and the temporal mean and the global residual
are weighted by the masks, so clouds do not leak into the result.

Six more additions, all off in the paper's configuration:
* ``phase_inputs``: the frames arrive registered to whole LR pixels only (their samples are
  not resampled, so their aliasing is intact), with their sub-pixel phases
  (``preprocess.subpixel_phase``). Each frame gets its phase as two constant input channels,
  and the global residual is the masked mean of the frames resampled (bicubic) straight onto
  the HR grid at their true positions, as the classical registered mean is;
* ``deconv_kernel``: that residual then goes through a learnable deconvolution kernel that
  starts as the (windowed) Wiener filter of the classical pipeline, and the mean head starts
  at zero: the untrained network is the registered mean + Wiener pipeline, and training
  learns what that pipeline misses;
* ``backprojection_steps``: the SR then goes through that many unrolled, learnable steps of
  iterative back-projection (``backprojection.BackProjection``, needs ``phase_inputs``), which
  make it consistent with every clear frame as the classical IBP does;
* ``refine_features``: a last residual CNN at HR resolution (``HRRefinement``) sees that SR and
  the fused features, and restores what the LR layers and the back-projection cannot (detail
  beyond the sensor's cut-off); its last layer starts at zero, so adding it changes nothing
  until it is trained;
* ``detail_features``: a final residual CNN of ``detail_blocks`` residual blocks on the SR
  rearranged to LR pixels (space-to-depth, 9 channels per LR pixel) and the fused features
  (``DetailRestoration``): the HR refinement's view is 7 HR pixels wide, this one's is
  4 * ``detail_blocks`` + 5 LR pixels, at the cost of LR-sized convolutions. Its last layer
  starts at zero too;
* ``anchor_brightness`` (the first trained weights only): the SR's mean over the tile is set to
  the mean of the frames' clear temporal mean: their losses ignored a brightness bias and their
  back-projection fitted each frame's offset per tile, so nothing held the output's level.

Three more make the physics hold by construction and the result independent of the tile size
(the second weights; the frames then arrive in the reference frame's radiometry, fitted once
per scene: ``registration.radiometry``, and the training targets are aligned, so the training
itself holds the level):
* ``constrained``: the back-projection PSF and kernels are non-negative, sum to one and are
  centred, no gain or offset is fitted per tile, and the deconvolution has a DC gain of exactly
  one (``kernels``);
* ``pool_window``: the TEFA channel gate and the TERN descriptor pool over each pixel's
  neighbourhood instead of the whole tile (``local_mean``);
* ``uncertainty_inputs``: the log-scale head also sees the SR's gradient, the frames' spread and
  the share of clear frames (``PIUnet.uncertainty_cues``), where errors gather.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import SCALE
from ..imaging.deconvolution import wiener_kernel
from .backprojection import BackProjection
from .config_bounds import Bound
from .kernels import UnitGainFilter
from .sampling import MASK_EPS, fill_cloudy, masked_temporal_mean, resample_at_phases

CLOUDY_KEY_PENALTY = 8.0  # attention logit penalty of a cloudy key (e^-8: near-zero weight)
UNCERTAINTY_CUES = ("SR gradient", "frames' spread", "clear frames")
"""What the log-scale head sees beside the fused features with ``uncertainty_inputs`` (HR maps)."""
TERN_KERNEL = 5


@dataclass(frozen=True)
class PIUnetConfig:
    """Layer sizes. The paper's: 42 features, 16 TEFA blocks, bottleneck 42 -> 5."""

    n_feat: int = 42
    n_tefa: int = 16
    bottleneck: int = 5
    phase_inputs: bool = False  # frames also carry their sub-pixel phase (2 constant channels)
    deconv_kernel: int = 0  # size of the learnable deconvolution of the global residual (0: none)
    backprojection_steps: int = 0  # unrolled back-projection steps on the SR (needs phase_inputs)
    refine_features: int = 0  # width of the HR refinement CNN on the SR (0: none)
    detail_features: int = 0  # width of the space-to-depth detail CNN on the SR (0: none)
    detail_blocks: int = 4  # its residual blocks
    anchor_brightness: bool = False  # SR mean over the tile = mean of the frames' clear temporal mean
    constrained: bool = False  # physics by construction: PSFs, back-projection and deconvolution kernels
    pool_window: int = 0  # TEFA gate and TERN descriptor over local windows of this side (0: the whole tile)
    uncertainty_inputs: bool = False  # the log-scale head also sees the SR's gradient and the frames' spread

    BOUNDS = {  # what a weights file's embedded config may ask for (a class attribute, not a field)
        "n_feat": Bound(1, 256), "n_tefa": Bound(0, 64), "bottleneck": Bound(1, 256),
        "deconv_kernel": Bound(0, 63, odd=True), "backprojection_steps": Bound(0, 32),
        "refine_features": Bound(0, 256), "detail_features": Bound(0, 256), "detail_blocks": Bound(0, 32),
        "pool_window": Bound(0, 127, odd=True)}

    def to_dict(self) -> dict:
        return asdict(self)

    def tile_bytes(self, frames: int, pixels: int, batch: int = 1) -> int:
        """Peak memory of one forward pass on the CPU over `batch` tiles of `pixels` LR pixels
        (context included) and `frames` frames. Fitted to peak RSS measured on 36 to 132 pixel
        tiles, 4 to 18 frames, 32 to 64 features (docs/performance.md), with the detail CNN's
        LR-sized features counted, x 1.25: the peak of one pass varies by up to 2x between
        processes (the allocator reuses freed blocks or maps new ones), the estimate bounds the
        highest of repeated measurements."""
        per_pixel = 14 * self.n_feat * frames + 18 * (self.refine_features + frames) + 12 * self.detail_features
        return 64 * 2 ** 20 + int(1.25 * 4 * batch * pixels * per_pixel)


class TemporalSelfAttention(nn.Module):
    """Single-head self-attention across frames, independently at every pixel.

    Q = XWq, K = XWk, V = XWv over the time axis; no positional encoding, so it is
    equivariant to frame permutations. Cloudy frames are penalised as keys.
    """

    def __init__(self, n_feat: int):
        super().__init__()
        self.qkv = nn.Linear(n_feat, 3 * n_feat)
        self.out = nn.Linear(n_feat, n_feat)

    def forward(self, h: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        # h: (B, F, T, H, W); key_bias: (B, T, H, W)
        b, f, t, y, x = h.shape
        tokens = h.permute(0, 3, 4, 2, 1).reshape(b * y * x, t, f)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        bias = key_bias.permute(0, 2, 3, 1).reshape(b * y * x, 1, t)
        logits = torch.bmm(q, k.transpose(1, 2)) / f ** 0.5 + bias
        attended = self.out(torch.bmm(logits.softmax(dim=-1), v))
        return attended.reshape(b, y, x, t, f).permute(0, 4, 3, 1, 2)


class CNRSA(nn.Module):
    """Conv (shared over frames) - BatchNorm - LeakyReLU, then residual self-attention - BatchNorm."""

    def __init__(self, n_in: int, n_feat: int):
        super().__init__()
        self.conv = nn.Conv3d(n_in, n_feat, (1, 3, 3), padding=(0, 1, 1))
        self.norm_conv = nn.BatchNorm3d(n_feat)
        self.attention = TemporalSelfAttention(n_feat)
        self.norm_attention = nn.BatchNorm3d(n_feat)

    def forward(self, h: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.norm_conv(self.shared_conv(h)))
        return self.norm_attention(h + self.attention(h, key_bias))

    def shared_conv(self, h: torch.Tensor) -> torch.Tensor:
        """The (1,3,3) convolution over (B,F,T,H,W) as a 2D convolution of the B*T frames: the
        same numbers as ``self.conv(h)``, about 4x faster on the CPU (forward and backward),
        where PyTorch has no fast 3D convolution."""
        b, f, t, y, x = h.shape
        out = F.conv2d(h.transpose(1, 2).reshape(b * t, f, y, x), self.conv.weight[:, :, 0], self.conv.bias,
                       padding=1)
        return out.reshape(b, t, -1, y, x).transpose(1, 2)


def local_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of (B, C, H, W) maps over `window` x `window` neighbourhoods (`window` odd; borders:
    the pixels inside the image only), as a column pass then a row pass: the same mean as one
    `window` x `window` pooling (up to float rounding), about 5x faster at 15 pixels on the CPU."""
    half = window // 2
    columns = F.avg_pool2d(x, (window, 1), stride=1, padding=(half, 0), count_include_pad=False)
    return F.avg_pool2d(columns, (1, window), stride=1, padding=(0, half), count_include_pad=False)


class TEFA(nn.Module):
    """Temporally-equivariant feature attention: two CNR-SA units, a channel gate, a residual.

    The gate squeezes the features' mean over frames and space: over the whole tile (the paper),
    or with `window` over each pixel's neighbourhood, so that it does not depend on the tile size."""

    def __init__(self, n_feat: int, bottleneck: int, window: int = 0):
        super().__init__()
        self.window = window
        self.unit0 = CNRSA(n_feat, n_feat)
        self.unit1 = CNRSA(n_feat, n_feat)
        self.squeeze = nn.Linear(n_feat, bottleneck)
        self.excite = nn.Linear(bottleneck, n_feat)

    def forward(self, h: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        features = self.unit1(F.leaky_relu(self.unit0(h, key_bias)), key_bias)
        if not self.window:
            gate = torch.sigmoid(self.excite(F.leaky_relu(self.squeeze(features.mean(dim=(2, 3, 4))))))
            return features * gate[:, :, None, None, None] + h
        pooled = local_mean(features.mean(dim=2), self.window).permute(0, 2, 3, 1)  # (B, H, W, F)
        gate = torch.sigmoid(self.excite(F.leaky_relu(self.squeeze(pooled)))).permute(0, 3, 1, 2)
        return features * gate[:, :, None] + h


class TERN(nn.Module):
    """Temporally-equivariant registration: one dynamic 5x5 filter per frame, from its features
    averaged over its clear pixels: over the whole tile (the paper), or with `window` over each
    pixel's neighbourhood (a filter per frame and pixel, independent of the tile size)."""

    def __init__(self, n_feat: int, window: int = 0):
        super().__init__()
        self.window = window
        self.unit = CNRSA(n_feat, n_feat)
        self.to_filter = nn.Linear(n_feat, TERN_KERNEL * TERN_KERNEL)

    def forward(self, h: torch.Tensor, key_bias: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        b, f, t, y, x = h.shape
        descriptor = F.leaky_relu(self.unit(h, key_bias))
        pad = TERN_KERNEL // 2
        if self.window:  # each frame's descriptor averaged over its clear pixels nearby
            weights = masks[:, None] + MASK_EPS  # (B, 1, T, H, W): one weight map per frame, for every feature
            weighted = local_mean((descriptor * weights).reshape(b, f * t, y, x), self.window).reshape(b, f, t, y, x)
            local = weighted / local_mean(weights[:, 0], self.window)[:, None]
            filters = self.to_filter(local.permute(0, 2, 3, 4, 1))  # (B, T, H, W, K*K)
            padded = F.pad(h.reshape(b, f * t, y, x), (pad, pad, pad, pad), mode="replicate")
            return apply_filters_shifted(padded.reshape(b, f, t, y + 2 * pad, x + 2 * pad),
                                         filters.permute(0, 1, 4, 2, 3))
        # per-frame global descriptor over its clear pixels: (B, T, F)
        descriptor = masked_temporal_mean(descriptor.flatten(3), masks.flatten(2)[:, None], dim=3)
        filters = self.to_filter(descriptor.transpose(1, 2))  # (B, T, K*K)
        padded = F.pad(h.reshape(b, f * t, y, x), (pad, pad, pad, pad), mode="replicate")
        if torch.onnx.is_in_onnx_export():
            return apply_filters_shifted(padded.reshape(b, f, t, y + 2 * pad, x + 2 * pad), filters)
        # the same sum as one depthwise convolution (one filter per feature map): ~9x faster in
        # eager mode; ONNX needs a static group count, hence the shifted form above for export
        weight = filters[:, None].expand(b, f, t, TERN_KERNEL * TERN_KERNEL)
        weight = weight.reshape(b * f * t, 1, TERN_KERNEL, TERN_KERNEL)
        out = F.conv2d(padded.reshape(1, b * f * t, y + 2 * pad, x + 2 * pad), weight, groups=b * f * t)
        return out.reshape(b, f, t, y, x)


def apply_filters_shifted(padded: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """TERN's dynamic filtering as K*K shifted multiply-adds (static shapes only: ONNX-friendly).

    padded: (B, F, T, H+K-1, W+K-1) replicate-padded features; filters: (B, T, K*K), one filter
    per frame shared by its features, or (B, T, K*K, H, W), one per frame and pixel.
    Returns (B, F, T, H, W).
    """
    y, x = padded.shape[-2] - TERN_KERNEL + 1, padded.shape[-1] - TERN_KERNEL + 1
    out = torch.zeros_like(padded[..., :y, :x])
    per_pixel = filters.dim() == 5
    for i in range(TERN_KERNEL):
        for j in range(TERN_KERNEL):
            weight = filters[:, :, i * TERN_KERNEL + j]
            weight = weight[:, None] if per_pixel else weight[:, None, :, None, None]
            out.addcmul_(weight, padded[:, :, :, i:i + y, j:j + x])  # in place: 2x faster on the CPU
    return out


def phase_channels(phases: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """(B,T,2) sub-pixel phases in [-0.5, 0.5] -> two (B,T,H,W) constant maps in [-1, 1]."""
    return (2.0 * phases)[..., None, None].expand(*phases.shape, shape[-2], shape[-1]).unbind(dim=2)


class HRRefinement(nn.Module):
    """Residual conv-LReLU-conv-LReLU-conv at HR on the SR and the upsampled fused features."""

    def __init__(self, n_fused: int, n_feat: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(n_fused + 1, n_feat, 3, padding=1), nn.LeakyReLU(),
            nn.Conv2d(n_feat, n_feat, 3, padding=1), nn.LeakyReLU(),
            nn.Conv2d(n_feat, 1, 3, padding=1))
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, sr: torch.Tensor, fused_hr: torch.Tensor) -> torch.Tensor:
        return sr + self.layers(torch.cat([sr, fused_hr], dim=1))


class DetailRestoration(nn.Module):
    """Residual CNN on the SR seen as SCALE x SCALE channels per LR pixel, with the fused LR
    features: conv, `blocks` x (conv-LReLU-conv + skip), conv back to SCALE^2 channels (zero
    at start), depth-to-space, added to the SR."""

    def __init__(self, n_fused: int, n_feat: int, blocks: int):
        super().__init__()
        self.head = nn.Conv2d(n_fused + SCALE * SCALE, n_feat, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(n_feat, n_feat, 3, padding=1), nn.LeakyReLU(),
                          nn.Conv2d(n_feat, n_feat, 3, padding=1)) for _ in range(blocks))
        self.tail = nn.Conv2d(n_feat, SCALE * SCALE, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, sr: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.head(torch.cat([F.pixel_unshuffle(sr, SCALE), fused], dim=1)))
        for block in self.blocks:
            h = h + block(h)
        return sr + F.pixel_shuffle(self.tail(h), SCALE)


class PIUnet(nn.Module):
    """The PIUnet network. Input frames (B,T,H,W) normalised, masks (B,T,H,W) in {0,1}.

    Returns the SR mean (B,1,3H,3W) and the Laplace log-scale (B,1,3H,3W), both in the
    normalised units of the input.
    """

    name = "piunet"

    def __init__(self, config: PIUnetConfig = PIUnetConfig()):
        super().__init__()
        self.config = config
        n = config.n_feat
        self.head = CNRSA(4 if config.phase_inputs else 2, n)
        self.body = nn.ModuleList([TEFA(n, config.bottleneck, config.pool_window) for _ in range(config.n_tefa)])
        self.body_tail = CNRSA(n, n)
        self.registration = TERN(n, config.pool_window)
        self.to_mean = nn.Conv2d(n, SCALE * SCALE, 3, padding=1)
        if config.uncertainty_inputs and not config.phase_inputs:
            raise ValueError("uncertainty_inputs needs phase_inputs")
        head_inputs = n + (len(UNCERTAINTY_CUES) if config.uncertainty_inputs else 0)
        self.log_scale_head = nn.Sequential(
            nn.Conv2d(head_inputs, n, 3, padding=1), nn.BatchNorm2d(n), nn.LeakyReLU(), nn.Conv2d(n, 1, 1))
        self.deconvolution = None
        if config.deconv_kernel:
            size = config.deconv_kernel
            wiener = torch.from_numpy(wiener_kernel(size))[None, None]
            self.deconvolution = (UnitGainFilter(wiener) if config.constrained else
                                  nn.Conv2d(1, 1, size, padding=size // 2, padding_mode="replicate", bias=False))
            with torch.no_grad():
                self.deconvolution.weight.copy_(wiener)
                self.to_mean.weight.zero_()
                self.to_mean.bias.zero_()
        if config.backprojection_steps and not config.phase_inputs:
            raise ValueError("backprojection_steps needs phase_inputs")
        self.backprojection = (BackProjection(config.backprojection_steps, config.constrained)
                               if config.backprojection_steps else None)
        self.refinement = HRRefinement(n, config.refine_features) if config.refine_features else None
        self.detail = (DetailRestoration(n, config.detail_features, config.detail_blocks)
                       if config.detail_features else None)

    def forward(self, frames: torch.Tensor, masks: torch.Tensor,
                phases: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`phases` (B,T,2): sub-pixel phases of the frames, needed with ``phase_inputs``."""
        frames = fill_cloudy(frames, masks)
        key_bias = (masks - 1.0) * CLOUDY_KEY_PENALTY
        channels = [frames, masks]
        if self.config.phase_inputs:
            if phases is None:
                raise ValueError("this PIUnet takes the frames' sub-pixel phases (phase_inputs)")
            channels += phase_channels(phases, frames.shape)
        h = self.head(torch.stack(channels, dim=1), key_bias)
        skip = h
        for block in self.body:
            h = block(h, key_bias)
        h = F.leaky_relu(self.body_tail(h, key_bias)) + skip
        h = self.registration(h, key_bias, masks)
        fused = masked_temporal_mean(h, masks[:, None], dim=2)  # (B, F, H, W)
        fused_hr = F.interpolate(fused, scale_factor=SCALE, mode="bilinear", align_corners=False)
        hr_frames = hr_weights = None
        if self.config.phase_inputs:  # the frames on the HR grid and their clear weights, shared below
            hr_frames = resample_at_phases(frames, phases, "bicubic")
            hr_weights = resample_at_phases(masks, phases, "bilinear")
        base = self.global_residual(frames, masks, hr_frames, hr_weights)
        mean = F.pixel_shuffle(self.to_mean(fused), SCALE) + base
        if self.backprojection is not None:
            mean = self.backprojection(mean, frames, masks, phases, hr_weights)
        if self.refinement is not None:
            mean = self.refinement(mean, fused_hr)
        if self.detail is not None:
            mean = self.detail(mean, fused)
        if self.config.anchor_brightness:
            level = masked_temporal_mean(frames, masks, dim=1).mean(dim=(-2, -1))
            mean = mean - mean.mean(dim=(-2, -1), keepdim=True) + level[:, None, None, None]
        cues = self.uncertainty_cues(mean, hr_frames, hr_weights) if self.config.uncertainty_inputs else []
        return mean, self.log_scale_head(torch.cat([fused_hr, *cues], dim=1))

    def global_residual(self, frames: torch.Tensor, masks: torch.Tensor, hr_frames: torch.Tensor | None,
                        hr_weights: torch.Tensor | None) -> torch.Tensor:
        """(B,1,3H,3W): the masked temporal mean upsampled (the paper: bilinearly, of the LR
        mean; with phases: of the frames resampled at their phases, `hr_frames`, weighted by the
        masks resampled the same way, `hr_weights`), then deconvolved."""
        if hr_frames is not None:
            base = masked_temporal_mean(hr_frames, hr_weights, dim=1)[:, None]
        else:
            mode = "bicubic" if self.deconvolution is not None else "bilinear"
            base = F.interpolate(masked_temporal_mean(frames, masks, dim=1)[:, None], scale_factor=SCALE,
                                 mode=mode, align_corners=False)
        return base if self.deconvolution is None else self.deconvolution(base)

    @staticmethod
    def uncertainty_cues(mean: torch.Tensor, hr_frames: torch.Tensor, hr_weights: torch.Tensor) -> list[torch.Tensor]:
        """(B,1,3H,3W) maps that tell where the SR is likely wrong (UNCERTAINTY_CUES): the SR's
        gradient magnitude (errors gather on edges and texture), the clear frames' spread around
        their mean (change, residual clouds, misregistration) and the share of frames clear there."""
        sr = mean.detach()
        padded = F.pad(sr, (1, 1, 1, 1), mode="replicate")
        gradient = torch.sqrt((padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) ** 2
                              + (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) ** 2 + 1e-8)
        centre = masked_temporal_mean(hr_frames, hr_weights, dim=1)[:, None]
        spread = torch.sqrt(masked_temporal_mean((hr_frames - centre) ** 2, hr_weights, dim=1)[:, None] + 1e-8)
        return [gradient, spread, hr_weights.mean(dim=1, keepdim=True)]
