"""A flow-based prior over blur kernels (FKP: Liang, Zhang, Gu, Van Gool and Timofte, "Flow-based
kernel prior with application to blind super-resolution", CVPR 2021), as used by Impieri et al.
(IGARSS 2024) for self-supervised MISR and test-time fine-tuning.

A kernel is the optical blur in HR pixels, before the sensor's 3 x 3 pixel integration (which
``sampling.observe_at_phases`` applies), 15 x 15 for x3 (FKP's min(4 * scale + 3, 21)). It is
applied as ``backprojection.blur(image, kernel)``.

    z ~ N(0, I) (225) -> flow inverse -> y (225 logits) -> log sigmoid(y)
      -> exponential tilt (centroid to the centre pixel) -> softmax -> kernel (1, 15, 15)

* The flow (FKP's network): ``n_blocks`` x [masked affine coupling (RealNVP; scale net with
  tanh, translation net with ReLU, as MAF) + flow batch normalisation], the masks alternating
  between the two colours of the 15 x 15 checkerboard. It is invertible with an exact
  log-determinant, so ``log_prob`` is the exact log-density of a kernel's representation y.
* The representation y (FKP's pre-processing): kernel / ``normalization`` (the sharpest
  training kernel's peak + 0.01, so values lie in [0, 1)), plus dequantisation noise in
  [0, ``dequantisation``) (its mean when no noise is given), then logit.
* Non-negative and summing to one by construction: the kernel is a softmax of log sigmoid(y).
* Centred by construction: the first moment (centroid) sum_x x k(x) is moved to the centre
  pixel by an exponential tilt, k(x) proportional to sigmoid(y(x)) exp(a . x), with a (2,) found
  by ``centring_iterations`` damped Newton steps on the convex log-partition (unrolled, so the
  kernel is differentiable in z; ``centred_softmax``). A tilt keeps the kernel positive and
  normalised, and on a Gaussian it is exactly a shift (N(m, S) exp(a . x) is proportional to
  N(m + S a, S)), so it re-centres without reshaping; a sub-pixel resampling would blur and a
  Fourier shift would ring into negative values. Why centre: the frame's sub-pixel phase is
  estimated separately (registration); a kernel free to move its centroid would trade off
  against that phase and shift the SR. "Centred" means: centroid within ``CENTRING_TOLERANCE``
  HR px of pixel (7, 7) per axis (measured: under 2e-5 px, even for far latents).

Test-time fine-tuning freezes the flow (``load_kernel_prior``) and optimises one latent z per
frame through ``kernel(z)``; ``fit_latent`` projects a given kernel onto the prior.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MisrError
from ..resources import weights_dir
from .backprojection import PSF_SIGMA, gaussian_kernel
from .config_bounds import Bound, checked_config
from .weights import read_metadata, read_state_dict

CENTRING_TOLERANCE = 1e-3  # HR px: |centroid - centre pixel| of every kernel(z), per axis
MAX_TILT_STEP = 4.0  # largest Newton step on the tilt (log-units per HR px)
TILT_RIDGE = 1e-3  # px^2 added to the covariance's diagonal (delta-like kernels)
STEP_FRACTIONS = (1.0, 0.5, 0.25, 0.125, 1 / 16, 1 / 32, 1 / 64, 0.0)  # the line search's


@dataclass(frozen=True)
class KernelPriorConfig:
    """Sizes of the flow and its kernel representation (FKP's for x3: 5 blocks, hidden 20)."""

    kernel_size: int = 15
    n_blocks: int = 5
    hidden_size: int = 20
    n_hidden: int = 1
    normalization: float = 0.86  # peak of the sharpest training kernel (0.845) + 0.01, as FKP
    # uniform noise added to kernel / normalization (FKP: 1/720). Its mean (and alpha) stays in
    # generated kernels as a flat pedestal of about 5e-6 per pixel, 0.1% of the mass (FKP's
    # 1/720 would leave 12%)
    dequantisation: float = 1e-5
    alpha: float = 1e-6  # logit margin, as FKP
    centring_iterations: int = 8

    BOUNDS = {  # what a weights file's embedded config may ask for (a class attribute, not a field)
        "kernel_size": Bound(3, 63, odd=True), "n_blocks": Bound(1, 64), "hidden_size": Bound(1, 4096),
        "n_hidden": Bound(0, 16), "normalization": Bound(1e-3, 1), "dequantisation": Bound(0, 1),
        "alpha": Bound(0, 0.1), "centring_iterations": Bound(0, 100)}

    def to_dict(self) -> dict:
        return asdict(self)


class MaskedAffineCoupling(nn.Module):
    """RealNVP affine coupling: the free half (mask 0) is scaled and shifted by functions of the
    fixed half (mask 1). Forward (data -> base): u = (x - t(m x)) exp(-s(m x)), with s and t
    zero on the fixed half, which therefore passes unchanged."""

    def __init__(self, size: int, hidden: int, n_hidden: int, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)
        self.scale_net = _mlp(size, hidden, n_hidden, nn.Tanh)
        self.translation_net = _mlp(size, hidden, n_hidden, nn.ReLU)

    def _scale_and_translation(self, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        free = 1 - self.mask
        return self.scale_net(fixed) * free, self.translation_net(fixed) * free

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_s, t = self._scale_and_translation(x * self.mask)
        return (x - t) * torch.exp(-log_s), -log_s.sum(1)

    def inverse(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_s, t = self._scale_and_translation(u * self.mask)
        return u * torch.exp(log_s) + t, log_s.sum(1)


def _mlp(size: int, hidden: int, n_hidden: int, activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(size, hidden), activation()]
    for _ in range(n_hidden):
        layers += [nn.Linear(hidden, hidden), activation()]
    return nn.Sequential(*layers, nn.Linear(hidden, size))


class FlowBatchNorm(nn.Module):
    """RealNVP's batch normalisation as an invertible layer: batch statistics while training
    (updating running ones), running statistics otherwise and in the inverse."""

    def __init__(self, size: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(size))
        self.beta = nn.Parameter(torch.zeros(size))
        self.register_buffer("running_mean", torch.zeros(size))
        self.register_buffer("running_var", torch.ones(size))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            mean, var = x.mean(0), x.var(0)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var, self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean) / torch.sqrt(var + self.eps) * self.log_gamma.exp() + self.beta
        log_det = (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum()
        return y, log_det * torch.ones_like(x[:, 0])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        std = torch.sqrt(self.running_var + self.eps)
        x = (y - self.beta) * torch.exp(-self.log_gamma) * std + self.running_mean
        log_det = (torch.log(std) - self.log_gamma).sum()
        return x, log_det * torch.ones_like(y[:, 0])


def pixel_offsets(size: int) -> torch.Tensor:
    """(size*size, 2) offsets (dy, dx) of each pixel from the centre pixel, row-major."""
    axis = torch.arange(size, dtype=torch.float32) - size // 2
    dy, dx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([dy.flatten(), dx.flatten()], dim=1)


def centroid(kernels: torch.Tensor) -> torch.Tensor:
    """(N,2) first moments (dy, dx) of (N,1,K,K) kernels, in px from the centre pixel."""
    flat = kernels.flatten(1)
    return flat @ pixel_offsets(kernels.shape[-1]).to(flat) / flat.sum(1, keepdim=True)


def centred_softmax(logits: torch.Tensor, offsets: torch.Tensor, iterations: int) -> torch.Tensor:
    """softmax(logits + offsets @ a), the tilt a (N,2) chosen so that the result's centroid is the
    centre pixel: (N,P) logits, (P,2) offsets -> (N,P) weights.

    a minimises the convex log-partition A(a) = logsumexp(logits + offsets @ a), whose gradient
    is the centroid. Each iteration takes the Newton step (the centroid through the covariance,
    ridged and capped at ``MAX_TILT_STEP``) times the fraction in ``STEP_FRACTIONS`` that lowers
    A most. The change of A is computed relative to the current weights, as
    sum_x p(x) expm1(move . x), so that float32 resolves it near the optimum. A never increases,
    so this converges for any logits, even the multi-peaked kernels of far latents where plain
    Newton steps oscillate."""
    tilt = torch.zeros_like(logits[:, :2])
    fractions = logits.new_tensor(STEP_FRACTIONS)[None, :, None]  # (1,S,1)
    moments = torch.cat([offsets, offsets ** 2, offsets[:, :1] * offsets[:, 1:]], dim=1)  # y x yy xx yx
    for _ in range(iterations):
        p = torch.softmax(logits + tilt @ offsets.T, dim=1)
        my, mx, syy, sxx, syx = (p @ moments).unbind(1)
        cyy, cxx, cyx = syy - my ** 2 + TILT_RIDGE, sxx - mx ** 2 + TILT_RIDGE, syx - my * mx
        step = torch.stack([cxx * my - cyx * mx, cyy * mx - cyx * my], 1) / (cyy * cxx - cyx ** 2)[:, None]
        step = step * (MAX_TILT_STEP / step.norm(dim=1, keepdim=True).clamp(min=MAX_TILT_STEP))
        exponents = (-fractions * (step @ offsets.T)[:, None, :]).clamp(max=80.0)  # (N,S,P)
        expm1 = torch.tanh(exponents / 2) * (torch.exp(exponents) + 1)  # exact, exports to ONNX
        change = (p[:, None, :] * expm1).sum(2)  # exp(A(a + move) - A(a)) - 1, (N,S)
        best = fractions[0, :, 0][change.argmin(dim=1)]
        tilt = tilt - best[:, None] * step
    return torch.softmax(logits + tilt @ offsets.T, dim=1)


class KernelPrior(nn.Module):
    """FKP's flow over 15 x 15 kernels: latent z (N,225) <-> kernel (N,1,15,15)."""

    name = "kernel_prior"

    def __init__(self, config: KernelPriorConfig | None = None):
        super().__init__()
        self.config = config or KernelPriorConfig()
        size = self.config.kernel_size ** 2
        self.latent_size = size
        self.register_buffer("offsets", pixel_offsets(self.config.kernel_size), persistent=False)
        mask = (torch.arange(size) % 2).float()  # odd size: a checkerboard on the kernel
        layers: list[nn.Module] = []
        for _ in range(self.config.n_blocks):
            layers += [MaskedAffineCoupling(size, self.config.hidden_size, self.config.n_hidden, mask),
                       FlowBatchNorm(size)]
            mask = 1 - mask
        self.flow = nn.ModuleList(layers)

    def to_latent(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Representations y (N,225) -> latents z and log|det dz/dy| (N,)."""
        log_det = torch.zeros_like(y[:, 0])
        for layer in self.flow:
            y, part = layer(y)
            log_det = log_det + part
        return y, log_det

    def from_latent(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents z (N,225) -> representations y and log|det dy/dz| (N,)."""
        log_det = torch.zeros_like(z[:, 0])
        for layer in reversed(self.flow):
            z, part = layer.inverse(z)
            log_det = log_det + part
        return z, log_det

    def represent(self, kernels: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(N,1,K,K) kernels summing to one -> representations y (N,225): scaled, dequantised
        by `noise` (N,225) in [0, dequantisation) or by its mean, logit."""
        c = self.config
        scaled = kernels.flatten(1) / c.normalization
        scaled = scaled + (noise if noise is not None else c.dequantisation / 2)
        return torch.logit(c.alpha + (1 - 2 * c.alpha) * scaled.clamp(0.0, 1.0))

    def log_prob(self, kernels: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(N,) log-density (nats) of the kernels' representations y under the flow."""
        z, log_det = self.to_latent(self.represent(kernels, noise))
        base = -0.5 * (z ** 2).sum(1) - 0.5 * self.latent_size * torch.log(torch.tensor(2 * torch.pi))
        return base + log_det

    def kernel(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N,225) -> kernels (N,1,K,K): non-negative, summing to one, centred."""
        y, _ = self.from_latent(z)
        weights = centred_softmax(F.logsigmoid(y), self.offsets, self.config.centring_iterations)
        k = self.config.kernel_size
        return weights.reshape(-1, 1, k, k)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.kernel(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` kernels (n,1,K,K) from latents drawn from the base N(0, I)."""
        z = torch.randn(n, self.latent_size, generator=generator, device=self.offsets.device)
        return self.kernel(z)

    def default_latent(self, sigma: float = PSF_SIGMA) -> torch.Tensor:
        """(1,225) latent of the isotropic Gaussian of `sigma` HR px (default: ``PSF_SIGMA``, that
        the network's back-projection PSF starts from): an initialisation for test-time fine-tuning."""
        gaussian = torch.from_numpy(gaussian_kernel(self.config.kernel_size, sigma))
        was_training = self.training
        with torch.no_grad():
            z, _ = self.eval().to_latent(self.represent(gaussian[None, None].to(self.offsets.device)))
        self.train(was_training)
        return z


def fit_latent(prior: KernelPrior, kernels: torch.Tensor, steps: int = 300, learning_rate: float = 0.1,
               z: torch.Tensor | None = None) -> torch.Tensor:
    """Project (N,1,K,K) kernels onto the prior: latents (N,225), from `z` (default: the
    default latent), minimising the squared L2 error of ``prior.kernel(z)`` by Adam. The N
    problems are independent (Adam is per coordinate), so they are solved as one batch."""
    start = z if z is not None else prior.default_latent().expand(len(kernels), -1)
    latent = start.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([latent], lr=learning_rate)
    target = kernels.detach()
    for _ in range(steps):
        with torch.enable_grad():
            loss = ((prior.kernel(latent) - target) ** 2).sum()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
        optimiser.step()
    return latent.detach()


def load_kernel_prior(path: str | Path | None = None, device: torch.device | str = "cpu") -> KernelPrior:
    """The shipped (or given) kernel prior, in eval mode and frozen (no parameter gradients)."""
    weights = Path(path) if path else weights_dir() / f"{KernelPrior.name}.safetensors"
    if not weights.is_file():
        raise MisrError(f"{weights}: weights file not found")
    metadata = read_metadata(weights)
    if metadata.get("model") != KernelPrior.name:
        raise MisrError(f"{weights}: weights are for model {metadata.get('model')!r}, not {KernelPrior.name!r}")
    prior = KernelPrior(checked_config(KernelPriorConfig, metadata.get("config", "{}"), str(weights)))
    prior.load_state_dict(read_state_dict(weights))
    return prior.eval().requires_grad_(False).to(device)
