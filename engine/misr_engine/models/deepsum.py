"""DeepSUM: deep super-resolution of unregistered multitemporal images.

Molini, Valsesia, Fracastoro & Magli, "DeepSUM: Deep neural network for Super-resolution of
Unregistered Multitemporal images", IEEE TGRS 2020. The blocks mirror the paper's figure:

    N frames, bicubic x3 -> SISRNet (2D conv + InstanceNorm + LeakyReLU, shared over frames)
      -> RegNet (each frame's features with the reference's -> one 9x9 filter per frame,
         global dynamic convolution (GDC) of its features, bicubic frame and mask)
      -> mutual inpainting (masked areas filled from the first clear frame)
      -> FusionNet (3D convolutions without temporal padding: N -> N-2 -> ... -> 1)
      -> + global residual: the mean of the registered, inpainted bicubic frames

How our inputs map onto it. The engine registers every frame to the scene's reference by
whole LR pixels and gives the sub-pixel remainder, the phase (LR px). The frames are ordered by
increasing cloud fraction (`clearness_order`; the clearest is the reference, as in the paper).
The reference is bicubic-upsampled at its exact phase, so every output lies on the scene's HR
grid whichever frame a tile's reference is; the other frames at their phase rounded to whole
HR pixels, as the reference code pre-registers to integer HR shifts, and RegNet learns the rest:
their residual shift 3 x phase - round(3 x phase) (at most half an HR pixel per axis), plus any
registration error. That residual is known, so RegNet's filters are trained, as in the paper,
by cross-entropy towards a delta at the true shift (`auxiliary_loss`; bilinear split between
the taps around a fractional shift).

Our additions, none in the paper:
* cloudy pixels are never read: they are replaced by the clear temporal mean before the bicubic
  upsampling (``piunet.fill_cloudy``), so cloud radiance cannot leak through SISRNet's view;
* any number of frames T (`window_slots`): fewer than N are repeated cyclically (the paper pads
  by repetition); more are used through sliding windows of N - 1 frames after the reference
  (the paper's sliding window, whose outputs it registers to the first and averages: here every
  window keeps the clearest frame as its reference, so the outputs share one grid);
* at inference, `passes` windows (rotations of the frames after the reference when T <= N) are
  averaged; their per-pixel spread, the SR's local texture and the cloud cover feed a log-linear
  map, fitted on validation scenes (`fit_calibration`), to the expected absolute error: the
  Laplace log-scale, the same uncertainty product as PIUnet's (DeepSUM has no uncertainty head);
* FusionNet's correction is in units of the tile's contrast (it is multiplied by the standard
  deviation of the residual over the tile) and has zero mean there. InstanceNorm makes every
  feature map contrast-free, so without this the correction had the same size on a flat tile
  (open water) as on a textured one: in a first training it gained 1.5-2.5 dB on textured
  validation scenes and lost up to 10 dB on flat ones. With it the network is equivariant to
  the input's contrast, as the ideal correction of a linear degradation is. The output's level
  is the residual's (the losses ignore a brightness bias, so nothing else would hold it);
* FusionNet's last layer starts at zero: the untrained network is the registered bicubic mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import SCALE
from .config_bounds import Bound
from .piunet import fill_cloudy
from .sampling import masked_temporal_mean, resample_at_phases

LEAKY_SLOPE = 0.2  # the reference code's tf.nn.leaky_relu default
ORDER_LEVELS = 20  # cloud fractions are compared in steps of 1/20 when ordering the frames
FEATURE_EPS = 1e-3  # added to spread and texture before their logarithm (normalised units)
DEFAULT_CALIBRATION = (0.0, 1.0, 0.0, 0.0)  # uncalibrated: scale = spread of the passes
IDENTITY_LOGIT = 5.0  # initial logit of RegNet's centre tap (the others 0): 65% of the filter


@dataclass(frozen=True)
class DeepSUMConfig:
    """Layer sizes. The paper's: N = 9, 64 features, 8 SISRNet layers, 9x9 filters."""

    n_frames: int = 9  # N, odd: FusionNet's (N - 1) / 2 layers fuse N frames into 1
    sisr_features: int = 64
    sisr_layers: int = 8
    regnet_features: int = 64  # RegNet: 2x this after the pair convolution, then this
    filter_size: int = 9
    fusion_features: int = 64
    passes: int = 3  # windows averaged at inference (their spread is the uncertainty's first input)
    regnet_weight: float = 0.0  # weight of RegNet's cross-entropy in `auxiliary_loss` (training)
    regnet_jitter: int = 0  # training: random extra whole-HR-pixel shifts (|d| <= this) for RegNet

    BOUNDS = {  # what a weights file's embedded config may ask for (a class attribute, not a field)
        "n_frames": Bound(3, 31, odd=True), "sisr_features": Bound(1, 256), "sisr_layers": Bound(1, 32),
        "regnet_features": Bound(1, 256), "filter_size": Bound(1, 15, odd=True),
        "fusion_features": Bound(1, 256), "passes": Bound(1, 16), "regnet_weight": Bound(0, 100),
        "regnet_jitter": Bound(0, 3)}

    @property
    def phase_inputs(self) -> bool:
        """DeepSUM always takes the frames' sub-pixel phases (for `backends.export_onnx`)."""
        return True

    def to_dict(self) -> dict:
        return asdict(self)

    def tile_bytes(self, frames: int, pixels: int, batch: int = 1) -> int:
        """Peak memory of one forward pass on the CPU over `batch` tiles of `pixels` LR pixels
        (context included) and `frames` frames: everything runs at HR size (SCALE^2 pixels per LR
        pixel), the features of every frame (kept for the passes), RegNet's pair maps, and every
        pass's window of N frames through FusionNet. Twice the tensors held at once, floats."""
        held = ((frames + 1) * (self.sisr_features + 2) * 2 + (frames + 1) * 2 * self.regnet_features
                + self.passes * self.n_frames * (self.sisr_features + 1 + 2 * self.fusion_features))
        return 64 * 2 ** 20 + 2 * 4 * SCALE * SCALE * batch * pixels * held


def conv_block(n_in: int, n_out: int) -> list[nn.Module]:
    """3x3 convolution (reflect padding, as the reference code) - InstanceNorm - LeakyReLU."""
    return [nn.Conv2d(n_in, n_out, 3, padding=1, padding_mode="reflect"),
            nn.InstanceNorm2d(n_out, affine=True), nn.LeakyReLU(LEAKY_SLOPE)]


class SISRNet(nn.Module):
    """Features of every bicubic-upsampled frame, the same 2D network for all frames."""

    def __init__(self, n_feat: int, n_layers: int):
        super().__init__()
        self.layers = nn.Sequential(*[m for i in range(n_layers) for m in conv_block(1 if i == 0 else n_feat, n_feat)])

    def forward(self, bicubic: torch.Tensor) -> torch.Tensor:
        """(M, N, h, w) -> (M, N, F, h, w)."""
        m, n, h, w = bicubic.shape
        return self.layers(bicubic.reshape(m * n, 1, h, w)).reshape(m, n, -1, h, w)


class RegNet(nn.Module):
    """One registration filter per frame after the reference, from the pair (frame, reference).

    The reference code's Conv3D [2,3,3] of stride 2 over (frame, reference) pairs is a 2D
    convolution of their stacked features; then three convolutions, a global spatial mean
    (here over the pixels clear in both frames) of a last convolution to K*K channels, and a
    softmax. That last convolution is applied after the mean, as a linear layer (the same up
    to the tile's border; the 81-channel convolution at HR size took 6% of a CPU training step).
    """

    def __init__(self, n_in: int, n_feat: int, filter_size: int):
        super().__init__()
        widths = [2 * n_in, 2 * n_feat, n_feat, n_feat, n_feat]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(a, b, 3, padding=1, padding_mode="reflect"), nn.LeakyReLU(LEAKY_SLOPE)]
        self.layers = nn.Sequential(*layers)
        self.to_filters = nn.Linear(n_feat, filter_size * filter_size)
        with torch.no_grad():  # start near the identity (the frames arrive nearly registered)
            self.to_filters.bias.zero_()
            self.to_filters.bias[filter_size * filter_size // 2] = IDENTITY_LOGIT

    def forward(self, features: torch.Tensor, clear: torch.Tensor) -> torch.Tensor:
        """Features (M, N, F, h, w), clear masks (M, N, h, w) -> filter logits (M, N-1, K*K)."""
        m, n, f, h, w = features.shape
        pairs = torch.cat([features[:, 1:], features[:, :1].expand(m, n - 1, f, h, w)], dim=2)
        maps = self.layers(pairs.reshape(m * (n - 1), 2 * f, h, w))
        both_clear = (clear[:, 1:] * clear[:, :1]).reshape(m * (n - 1), 1, h * w)
        pooled = masked_temporal_mean(maps.flatten(2), both_clear, dim=2)
        return self.to_filters(pooled).reshape(m, n - 1, -1)


class FusionNet(nn.Module):
    """Slow fusion: (N - 1) / 2 3D convolutions of temporal size 3, no temporal padding, each with
    InstanceNorm per frame and LeakyReLU, then a 1x1x1 convolution to one channel."""

    def __init__(self, n_in: int, n_feat: int, n_frames: int):
        super().__init__()
        depth = (n_frames - 1) // 2
        self.convs = nn.ModuleList(nn.Conv3d(n_in if i == 0 else n_feat, n_feat, 3, padding=(0, 1, 1),
                                             padding_mode="reflect") for i in range(depth))
        self.norms = nn.ModuleList(nn.InstanceNorm2d(n_feat, affine=True) for _ in range(depth))
        self.out = nn.Conv3d(n_feat, 1, 1)
        nn.init.zeros_(self.out.weight)  # the untrained network is the registered bicubic mean
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(M, N, F, h, w) -> (M, 1, h, w)."""
        x = features.transpose(1, 2)
        for conv, norm in zip(self.convs, self.norms):
            x = conv(x)
            m, f, t, h, w = x.shape
            x = norm(x.transpose(1, 2).reshape(m * t, f, h, w)).reshape(m, t, f, h, w).transpose(1, 2)
            x = F.leaky_relu(x, LEAKY_SLOPE)
        return self.out(x)[:, :, 0]


def clearness_order(frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """Frame indices (B, T), clearest first: by cloud fraction (in steps of 1/ORDER_LEVELS), then
    by the size of the phase (the scene's reference, phase 0, wins among equally clear frames),
    then by sharpness. A function of the frames, not of their order."""
    level = torch.round((1.0 - masks.mean(dim=(-2, -1))) * ORDER_LEVELS)
    b, t, h, w = frames.shape
    smooth = F.avg_pool2d(F.pad(frames.reshape(b * t, 1, h, w), (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    sharpness = (frames - smooth.reshape(b, t, h, w)).abs().mean(dim=(-2, -1))
    key = 4.0 * level + phases.abs().sum(dim=-1) + 1e-3 / (1.0 + sharpness)
    return torch.argsort(key, dim=1)


def window_slots(masks: torch.Tensor, n_frames: int, passes: int) -> torch.Tensor:
    """Which ordered frames fill the N slots of each pass: (passes, N) indices.

    Slot 0 is always the clearest frame (the reference). With T > N frames, the other slots
    are sliding windows over frames 1..T-1, spread evenly from the N clearest (pass 0) to the
    least clear; with T <= N, the T-1 other frames repeated cyclically, pass k starting at the
    k-th of them. Computed with tensor operations on T, so one ONNX export serves any T.
    """
    count = torch.ones_like(masks[0, :, 0, 0]).sum().long()
    k = torch.arange(passes, device=masks.device)[:, None]
    j = torch.arange(n_frames - 1, device=masks.device)[None, :]
    spread = torch.div(k * (count - n_frames), max(passes - 1, 1), rounding_mode="floor")
    offset = torch.where(count > n_frames, spread, k)
    others = torch.remainder(offset + j, torch.clamp(count - 1, min=1)) + 1
    return torch.cat([torch.zeros_like(k), torch.minimum(others, count - 1)], dim=1)


def take_frames(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, T, ...) -> (B, len, ...): the frames at `index` (B, len) of each sample."""
    shape = index.shape + x.shape[2:]
    expanded = index.reshape(index.shape + (1,) * (x.dim() - 2)).expand(shape)
    return torch.gather(x, 1, expanded)


def prealignment_phases(phases: torch.Tensor, jitter: int = 0) -> torch.Tensor:
    """Phases (M, N, 2) at which the frames are bicubic-upsampled: the reference's exact phase,
    the others' rounded to whole HR pixels (plus, in RegNet's training, a random whole-pixel
    jitter of at most `jitter` HR px)."""
    rounded = torch.round(SCALE * phases[:, 1:])
    if jitter:
        rounded = rounded + torch.randint_like(rounded, -jitter, jitter + 1)
    return torch.cat([phases[:, :1], rounded / SCALE], dim=1)


def delta_filters(offsets: torch.Tensor, size: int) -> torch.Tensor:
    """Ideal registration filters (..., size*size) for shifts `offsets` (..., 2) in HR px: a delta
    at the centre + offset, split bilinearly between the taps around a fractional offset."""
    taps = torch.arange(size, dtype=offsets.dtype, device=offsets.device) - size // 2
    wy = torch.relu(1.0 - (taps - offsets[..., :1]).abs())
    wx = torch.relu(1.0 - (taps - offsets[..., 1:]).abs())
    return (wy[..., :, None] * wx[..., None, :]).flatten(-2)


def global_dynamic_convolution(images: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """GDC: images (M, J, C, h, w), each frame filtered by its filter (M, J, K, K) on all its
    channels (reflect padding). The filter's tap (K//2 + dy, K//2 + dx) takes the input at
    (y + dy, x + dx)."""
    m, j, c, h, w = images.shape
    size = filters.shape[-1]
    pad = size // 2
    padded = F.pad(images.reshape(m, j * c, h, w), (pad, pad, pad, pad), mode="reflect")
    if torch.onnx.is_in_onnx_export():
        # static group counts only in ONNX: the same sum as K*K shifted multiply-adds
        padded = padded.reshape(m, j, c, h + 2 * pad, w + 2 * pad)
        out = torch.zeros_like(images)
        for dy in range(size):
            for dx in range(size):
                out = out + filters[:, :, dy, dx, None, None, None] * padded[..., dy:dy + h, dx:dx + w]
        return out
    weight = filters[:, :, None].expand(m, j, c, size, size).reshape(m * j * c, 1, size, size)
    out = F.conv2d(padded.reshape(1, m * j * c, h + 2 * pad, w + 2 * pad), weight, groups=m * j * c)
    return out.reshape(m, j, c, h, w)


def mutual_inpainting(x: torch.Tensor, clear: torch.Tensor) -> torch.Tensor:
    """Fill every frame's masked pixels (x: (M, N, C, h, w), clear: (M, N, h, w)) with the first
    frame in order that is clear there (the reference code's fill coefficients); pixels clear
    in no frame keep their own values."""
    clear = clear[:, :, None]
    before = torch.cumsum(clear, dim=1) - clear  # clear frames earlier in the order
    first = clear * (before < 0.5).to(clear.dtype)
    donor = (first * x).sum(dim=1, keepdim=True)
    seen = first.sum(dim=1, keepdim=True)
    return clear * x + (1.0 - clear) * (seen * donor + (1.0 - seen) * x)


def uncertainty_features(passes: torch.Tensor, mean: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B, 4, 3H, 3W): 1, log spread of the passes (B, K, 3H, 3W), log local texture of the SR
    mean (B, 1, 3H, 3W), cloudy fraction of the input frames (B, T, H, W) at each pixel."""
    spread = passes.std(dim=1, keepdim=True, unbiased=False)
    detail = mean - F.avg_pool2d(F.pad(mean, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    texture = F.avg_pool2d(F.pad(detail.abs(), (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    cloudy = F.interpolate(1.0 - masks.mean(dim=1, keepdim=True), scale_factor=SCALE, mode="nearest")
    return torch.cat([torch.ones_like(mean), torch.log(spread + FEATURE_EPS),
                      torch.log(texture + FEATURE_EPS), cloudy], dim=1)


class DeepSUM(nn.Module):
    """The DeepSUM network. Frames (B,T,H,W) normalised, masks (B,T,H,W) in {0,1}, phases (B,T,2).

    Returns the SR mean (B,1,3H,3W) and the Laplace log-scale (B,1,3H,3W), both in the
    normalised units of the input.
    """

    name = "deepsum"

    def __init__(self, config: DeepSUMConfig = DeepSUMConfig()):
        super().__init__()
        if config.n_frames < 3 or config.n_frames % 2 == 0:
            raise ValueError(f"n_frames must be odd and at least 3, got {config.n_frames}")
        self.config = config
        self.sisrnet = SISRNet(config.sisr_features, config.sisr_layers)
        self.regnet = RegNet(config.sisr_features, config.regnet_features, config.filter_size)
        self.fusionnet = FusionNet(config.sisr_features, config.fusion_features, config.n_frames)
        self.register_buffer("calibration", torch.tensor(DEFAULT_CALIBRATION))
        self._regnet_terms: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, frames: torch.Tensor, masks: torch.Tensor,
                phases: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mean, features = self.mean_and_features(frames, masks, phases)
        return mean, (features * self.calibration[None, :, None, None]).sum(dim=1, keepdim=True)

    def mean_and_features(self, frames: torch.Tensor, masks: torch.Tensor,
                          phases: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The SR mean (B,1,3H,3W) and the uncertainty's inputs (``uncertainty_features``)."""
        if phases is None:
            phases = torch.zeros(frames.shape[:2] + (2,), dtype=frames.dtype, device=frames.device)
        passes = self.window_outputs(frames, masks, phases)
        mean = passes.mean(dim=1, keepdim=True)
        return mean, uncertainty_features(passes, mean, masks)

    def window_outputs(self, frames: torch.Tensor, masks: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
        """The SR of every pass (B, K, 3H, 3W): one in training (the N clearest frames),
        `passes` at inference. SISRNet and RegNet run once per frame, FusionNet once per pass."""
        n = self.config.n_frames
        frames = fill_cloudy(frames * masks, masks)  # cloudy values are never read
        order = clearness_order(frames, masks, phases)
        if self.training:
            order = order[:, :n]
        frames, masks, phases = (take_frames(x, order) for x in (frames, masks, phases))
        registered, clear = self.register(frames, masks, phases)
        slots = window_slots(masks, n, 1 if self.training else self.config.passes)
        slots = torch.cat([torch.zeros_like(slots[:, :1]), slots[:, 1:] + 1], dim=1)  # into `registered`
        index = slots.flatten()[None].expand(frames.shape[0], -1)
        window = take_frames(registered, index)
        window_clear = take_frames(clear, index)
        out = self.fuse(window.reshape((-1, n) + window.shape[2:]), window_clear.reshape((-1, n) + clear.shape[2:]))
        return out.reshape(frames.shape[0], -1, out.shape[-2], out.shape[-1])

    def register(self, frames: torch.Tensor, masks: torch.Tensor,
                 phases: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ordered frames (B, T, H, W) -> SISRNet features with the bicubic frame as a last
        channel (B, T+1, F+1, 3H, 3W) and clear masks (B, T+1, 3H, 3W): first the reference at
        its exact phase, then every frame at its rounded phase registered to it by RegNet's GDC."""
        logits, offsets, stacked = self.regnet_logits(frames, masks, phases)
        if self.training:
            self._regnet_terms = (logits, offsets)
        size = self.config.filter_size
        filters = logits.softmax(dim=-1).reshape(logits.shape[:2] + (size, size))
        registered = torch.cat([stacked[:, :1], global_dynamic_convolution(stacked[:, 1:], filters)], dim=1)
        return registered[:, :, :-1], (registered[:, :, -1] > 0.5).to(registered.dtype)

    def regnet_logits(self, frames: torch.Tensor, masks: torch.Tensor,
                      phases: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """RegNet's filter logits (B, T, K*K) for ordered frames (B, T, H, W) against the first,
        the true residual shifts (B, T, 2) in HR px that they should register, and the
        pre-aligned stack (B, T+1, F+2, 3H, 3W): features, bicubic frame, clear mask."""
        jitter = self.config.regnet_jitter if self.training else 0
        phases = torch.cat([phases[:, :1], phases], dim=1)
        prealigned = prealignment_phases(phases, jitter)
        bicubic = resample_at_phases(torch.cat([frames[:, :1], frames], dim=1), prealigned, "bicubic")
        hr_masks = resample_at_phases(torch.cat([masks[:, :1], masks], dim=1), prealigned, "bilinear")
        clear = (hr_masks > 0.5).to(bicubic.dtype)
        features = self.sisrnet(bicubic)
        logits = self.regnet(features, clear)
        stacked = torch.cat([features, bicubic[:, :, None], clear[:, :, None]], dim=2)
        return logits, SCALE * (phases - prealigned)[:, 1:], stacked

    def fuse(self, window: torch.Tensor, clear: torch.Tensor) -> torch.Tensor:
        """One pass: registered features + bicubic (M, N, F+1, 3H, 3W) of N slots, clear masks
        (M, N, 3H, 3W) -> mutual inpainting -> FusionNet + mean of the bicubic frames (M, 1, 3H, 3W)."""
        filled = mutual_inpainting(window, clear)
        residual = filled[:, :, -1].mean(dim=1, keepdim=True)
        detail = self.fusionnet(filled[:, :, :-1])
        detail = detail - detail.mean(dim=(-2, -1), keepdim=True)
        return residual + detail * residual.std(dim=(-2, -1), keepdim=True, unbiased=False)

    def auxiliary_loss(self) -> torch.Tensor:
        """RegNet's pretraining objective, weighted by `regnet_weight`: cross-entropy between its
        filters and delta filters at the true residual shifts, for the last training forward."""
        if self._regnet_terms is None or not self.config.regnet_weight:
            return torch.zeros(())
        logits, offsets = self._regnet_terms
        self._regnet_terms = None
        target = delta_filters(offsets.float(), self.config.filter_size)
        cross_entropy = -(target * logits.float().log_softmax(dim=-1)).sum(dim=-1).mean()
        return self.config.regnet_weight * cross_entropy

    def registration_filters(self, frames: torch.Tensor, masks: torch.Tensor,
                             phases: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For frames in order (B, T, H, W): RegNet's filters (B, T, K, K) registering each to the
        first (at its exact phase), and the true residual shifts (B, T, 2) in HR px."""
        logits, offsets, _ = self.regnet_logits(frames, masks, phases)
        size = self.config.filter_size
        return logits.softmax(dim=-1).reshape(logits.shape[:2] + (size, size)), offsets


def filter_centroids(filters: torch.Tensor) -> torch.Tensor:
    """The shift (..., 2) in HR px that filters (..., K, K) apply: their centre of mass."""
    size = filters.shape[-1]
    taps = torch.arange(size, dtype=filters.dtype, device=filters.device) - size // 2
    return torch.stack([(filters.sum(dim=-1) * taps).sum(dim=-1), (filters.sum(dim=-2) * taps).sum(dim=-1)], dim=-1)


def fit_calibration(features: torch.Tensor, abs_error: torch.Tensor, iterations: int = 200) -> torch.Tensor:
    """Coefficients c (4,) of log_scale = c . features that maximise the Laplace likelihood of the
    absolute errors (P,) given the pixels' features (P, 4): minimise mean(s + |e| exp(-s)),
    convex in c. Then exp(log_scale) is the expected absolute error."""
    features, abs_error = features.double(), abs_error.double()
    coefficients = torch.zeros(features.shape[1], dtype=torch.float64)
    coefficients[0] = torch.log(abs_error.mean())
    coefficients.requires_grad_(True)
    optimiser = torch.optim.LBFGS([coefficients], max_iter=iterations, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimiser.zero_grad()
        s = features @ coefficients
        loss = (s + abs_error * torch.exp(-s)).mean()
        loss.backward()
        return loss
    optimiser.step(objective)
    return coefficients.detach().float()
