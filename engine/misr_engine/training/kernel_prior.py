"""Training of the flow-based kernel prior (``models.kernel_prior``) on synthetic blur kernels.

Kernels are drawn on the fly from a seeded generator, each normalised to sum one and point
symmetric about the centre pixel (so centred exactly):
* anisotropic Gaussians (the optics; FKP's training family): sigma per axis log-uniform in
  ``sigma_range`` HR px (0.4-4 by default: wider than the simulator's 0.7-1.8, since users'
  sensors differ), random orientation;
* motion blur: a line segment of random length and direction, about 1 px wide;
* defocus: a disc of random radius.
The last two are soft-edged capsules (points within a radius of a segment, edge a sigmoid of
the distance); ``mix`` gives the fractions (default 80% / 10% / 10%). The loss is FKP's: the
negative log-likelihood of the dequantised logit representation. Resumable from
``out_dir``/checkpoint.pt (model, optimiser, generator state), like ``training.train``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..models.config_bounds import Bound, OneOf
from ..models.kernel_prior import (
    FlowBatchNorm,
    KernelPrior,
    KernelPriorConfig,
    fit_latent,
    pixel_offsets,
)
from ..models.weights import save_weights
from .runs import start_run

CHECKPOINT = "checkpoint.pt"
LOG_COLUMNS = ["step", "train_nll", "val_nll_gaussian", "val_nll_motion", "val_nll_defocus",
               "val_nll_noise", "seconds"]
VALIDATION_SEED_OFFSET = 10_000  # validation kernels: seed + this, disjoint from training draws
CALIBRATION_SEED_OFFSET = 20_000  # the batch that sets the batch norms' running statistics


@dataclass
class KernelPriorTrainConfig:
    out_dir: str
    model: str = KernelPrior.name  # lets ``misr train`` tell this config from a TrainConfig
    steps: int = 20000
    batch_size: int = 128
    learning_rate: float = 1e-3  # cosine decay to 1/20 of it
    weight_decay: float = 1e-6  # as FKP
    grad_clip: float = 10.0
    seed: int = 0
    threads: int = 1  # torch CPU threads; 0 = torch's default
    val_every: int = 1000
    val_count: int = 256  # held-out kernels per family
    projection_steps: int = 300  # Adam steps of ``fit_latent`` in the final evaluation
    calibration_count: int = 8192  # kernels of the batch that sets the batch norms' statistics
    plot: bool = True  # kernels.png: samples, held-out kernels and their projections
    model_config: dict = field(default_factory=dict)
    mix: dict = field(default_factory=lambda: {"gaussian": 0.8, "motion": 0.1, "defocus": 0.1})
    sigma_range: tuple[float, float] = (0.4, 4.0)  # Gaussian sigma per axis, HR px (log-uniform)
    motion_length: tuple[float, float] = (2.0, 10.0)  # segment length, HR px
    defocus_radius: tuple[float, float] = (1.0, 5.0)  # HR px
    edge_softness: tuple[float, float] = (0.2, 0.5)  # HR px, of the capsules' sigmoid edge

    BOUNDS = {  # what ``training.run.load_config`` accepts (a class attribute, not a field: ``config_bounds``)
        "model": OneOf((KernelPrior.name,)), "steps": Bound(1, 10 ** 7), "batch_size": Bound(1, 65536),
        "learning_rate": Bound(1e-9, 1.0), "weight_decay": Bound(0, 1), "grad_clip": Bound(1e-6, 1e9),
        "seed": Bound(0, 2 ** 32 - 1), "threads": Bound(0, 4096), "val_every": Bound(1, 10 ** 7),
        "val_count": Bound(1, 10 ** 5), "projection_steps": Bound(0, 10 ** 5), "calibration_count": Bound(1, 10 ** 7),
        "sigma_range": Bound(0.05, 20), "motion_length": Bound(0, 30), "defocus_radius": Bound(0, 30),
        "edge_softness": Bound(0.01, 5)}

    def __post_init__(self) -> None:
        unknown = set(self.mix) - set(FAMILIES)
        if unknown or not self.mix or any(not isinstance(w, (int, float)) or w < 0 for w in self.mix.values()) \
                or not sum(self.mix.values()) > 0:
            raise ValueError(f"mix {self.mix}: weights >= 0, not all 0, of {', '.join(FAMILIES)}")


# --- kernel families -------------------------------------------------------------------------

def _normalised(weights: torch.Tensor, size: int) -> torch.Tensor:
    """(N,P) non-negative weights -> (N,1,K,K) kernels summing to one."""
    return (weights / weights.sum(1, keepdim=True)).reshape(len(weights), 1, size, size)


def _uniform(n: int, bounds: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=generator)


def anisotropic_gaussians(sigmas: torch.Tensor, angles: torch.Tensor, size: int = 15) -> torch.Tensor:
    """(N,1,K,K) Gaussians centred on the centre pixel, sigmas (N,2) along their axes (HR px),
    the first axis at `angles` (N,) radians from the image x axis; sampled at pixel centres."""
    offsets = pixel_offsets(size)
    cos, sin = torch.cos(angles)[:, None], torch.sin(angles)[:, None]
    along = cos * offsets[:, 1] + sin * offsets[:, 0]
    across = -sin * offsets[:, 1] + cos * offsets[:, 0]
    return _normalised(torch.exp(-0.5 * ((along / sigmas[:, :1]) ** 2 + (across / sigmas[:, 1:]) ** 2)), size)


def capsules(half_lengths: torch.Tensor, radii: torch.Tensor, angles: torch.Tensor,
             softness: torch.Tensor, size: int = 15) -> torch.Tensor:
    """(N,1,K,K) soft capsules centred on the centre pixel: the points within `radii` of a segment
    of half-length `half_lengths` at `angles`, edge sigmoid((radius - distance) / softness).
    Half-length 0 gives a disc (defocus), radius 0.5 a 1 px wide line (motion)."""
    offsets = pixel_offsets(size)
    direction = torch.stack([torch.sin(angles), torch.cos(angles)], dim=1)  # (dy, dx)
    along = (offsets @ direction.T).T.clamp(-half_lengths[:, None], half_lengths[:, None])
    distance = (offsets[None] - along[:, :, None] * direction[:, None]).norm(dim=2)
    return _normalised(torch.sigmoid((radii[:, None] - distance) / softness[:, None]), size)


def random_gaussians(n: int, config: KernelPriorTrainConfig, generator: torch.Generator,
                     size: int = 15) -> torch.Tensor:
    """`n` anisotropic Gaussians: sigmas log-uniform in ``sigma_range``, uniform orientation."""
    log_range = tuple(math.log(s) for s in config.sigma_range)
    sigmas = torch.exp(torch.stack([_uniform(n, log_range, generator) for _ in range(2)], dim=1))
    return anisotropic_gaussians(sigmas, _uniform(n, (0.0, math.pi), generator), size)


def random_motion(n: int, config: KernelPriorTrainConfig, generator: torch.Generator,
                  size: int = 15) -> torch.Tensor:
    """`n` motion blurs: 1 px wide segments, length uniform in ``motion_length``, any direction."""
    half = _uniform(n, config.motion_length, generator) / 2
    return capsules(half, torch.full((n,), 0.5), _uniform(n, (0.0, math.pi), generator),
                    _uniform(n, config.edge_softness, generator), size)


def random_defocus(n: int, config: KernelPriorTrainConfig, generator: torch.Generator,
                   size: int = 15) -> torch.Tensor:
    """`n` defocus blurs: discs of radius uniform in ``defocus_radius``."""
    return capsules(torch.zeros(n), _uniform(n, config.defocus_radius, generator), torch.zeros(n),
                    _uniform(n, config.edge_softness, generator), size)


FAMILIES: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian": random_gaussians, "motion": random_motion, "defocus": random_defocus}


def training_kernels(n: int, config: KernelPriorTrainConfig, generator: torch.Generator,
                     size: int = 15) -> torch.Tensor:
    """`n` kernels (n,1,K,K) of the training mix, each family drawn with its ``mix`` fraction."""
    names = list(config.mix)
    weights = torch.tensor([float(config.mix[name]) for name in names])
    counts = torch.bincount(torch.multinomial(weights, n, replacement=True, generator=generator),
                            minlength=len(names))
    return torch.cat([FAMILIES[name](int(c), config, generator, size) for name, c in zip(names, counts) if c])


# --- out-of-family kernels (validation and tests) -------------------------------------------

def noise_kernels(n: int, generator: torch.Generator, size: int = 15) -> torch.Tensor:
    """`n` non-blur kernels: uniform noise normalised to sum one."""
    return _normalised(torch.rand(n, size * size, generator=generator), size)


def two_peak_kernels(n: int, generator: torch.Generator, size: int = 15) -> torch.Tensor:
    """`n` double images: two Gaussians (sigma 0.7-1.2 px) 4-8 px apart, symmetric about the centre."""
    offsets = pixel_offsets(size)
    sigma = _uniform(n, (0.7, 1.2), generator)[:, None]
    angle = _uniform(n, (0.0, math.pi), generator)
    half = _uniform(n, (2.0, 4.0), generator)
    centre = half[:, None] * torch.stack([torch.sin(angle), torch.cos(angle)], dim=1)  # (N,2)
    peaks = [torch.exp(-0.5 * ((offsets[None] - sign * centre[:, None]) ** 2).sum(2) / sigma ** 2) for sign in (1, -1)]
    return _normalised(peaks[0] + peaks[1], size)


def validation_sets(config: KernelPriorTrainConfig, size: int = 15) -> dict[str, torch.Tensor]:
    """Held-out kernels, the same for every run with this seed: each training family, the
    simulator's Gaussians (sigma 0.7-1.8 px), and two out-of-family sets."""
    generator = torch.Generator().manual_seed(config.seed + VALIDATION_SEED_OFFSET)
    n = config.val_count
    simulator = KernelPriorTrainConfig(out_dir="", sigma_range=(0.7, 1.8))
    return {"gaussian": random_gaussians(n, config, generator, size),
            "motion": random_motion(n, config, generator, size),
            "defocus": random_defocus(n, config, generator, size),
            "simulator_gaussian": random_gaussians(n, simulator, generator, size),
            "noise": noise_kernels(n, generator, size),
            "two_peak": two_peak_kernels(n, generator, size)}


# --- evaluation -------------------------------------------------------------------------------

@torch.no_grad()
def mean_nll(prior: KernelPrior, kernels: torch.Tensor, dequantise: bool = True) -> float:
    """Mean negative log-likelihood (nats per kernel) in eval mode: dequantised as in training
    (noise from a fixed seed, so comparable with the training loss), or with the noise's mean
    (``log_prob``'s default) when `dequantise` is false."""
    was_training = prior.training
    prior.eval()
    noise = None
    if dequantise:
        generator = torch.Generator().manual_seed(0)
        noise = torch.rand(len(kernels), kernels[0].numel(), generator=generator) * prior.config.dequantisation
    nll = -prior.log_prob(kernels, noise).mean().item()
    prior.train(was_training)
    return nll


def projection_errors(prior: KernelPrior, kernels: torch.Tensor, steps: int) -> dict[str, float]:
    """How well ``fit_latent`` reproduces `kernels`: relative L2 error ||k_fit - k|| / ||k||
    (mean, 95th percentile, max), the worst pixel error relative to the kernel's peak, and the
    mean norm of the fitted latents (a typical draw from N(0, I) has norm about 15)."""
    prior.eval()
    z = fit_latent(prior, kernels, steps=steps)
    with torch.no_grad():
        fitted = prior.kernel(z)
    difference = (fitted - kernels).flatten(1)
    relative = difference.norm(dim=1) / kernels.flatten(1).norm(dim=1)
    peak_error = difference.abs().amax(1) / kernels.flatten(1).amax(1)
    return {"rel_l2_mean": relative.mean().item(), "rel_l2_p95": relative.quantile(0.95).item(),
            "rel_l2_max": relative.max().item(), "peak_error_max": peak_error.max().item(),
            "latent_norm_mean": z.norm(dim=1).mean().item()}


def evaluate_kernel_prior(prior: KernelPrior, config: KernelPriorTrainConfig,
                          projection_count: int = 64) -> dict[str, dict[str, float]]:
    """Per validation set: mean NLL, and projection errors on its first `projection_count`."""
    results = {}
    for name, kernels in validation_sets(config, prior.config.kernel_size).items():
        results[name] = {"nll": mean_nll(prior, kernels), "nll_noise_mean": mean_nll(prior, kernels, False),
                         **projection_errors(prior, kernels[:projection_count], config.projection_steps)}
    return results


def plot_kernels(prior: KernelPrior, config: KernelPriorTrainConfig, path: Path, columns: int = 8) -> None:
    """A PNG: kernels sampled from the prior, then held-out kernels of each training family above
    their projections onto the prior (``fit_latent``); each kernel scaled to its own peak."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prior.eval()
    held_out = validation_sets(config, prior.config.kernel_size)
    with torch.no_grad():
        rows = {"prior samples": prior.sample(columns, torch.Generator().manual_seed(config.seed))}
    for name in ("gaussian", "motion", "defocus"):
        rows[f"held-out {name}"] = held_out[name][:columns]
        with torch.no_grad():
            rows["projection"] = prior.kernel(fit_latent(prior, held_out[name][:columns], config.projection_steps))
        rows[f"projection ({name})"] = rows.pop("projection")
    figure, axes = plt.subplots(len(rows), columns, figsize=(columns * 1.1, len(rows) * 1.2))
    for axis_row, (label, kernels) in zip(axes, rows.items()):
        axis_row[0].set_title(label, fontsize=8, loc="left")
        for axis, kernel in zip(axis_row, kernels[:, 0]):
            axis.imshow(kernel.numpy(), cmap="magma", vmin=0, vmax=float(kernel.max()))
            axis.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# --- training ---------------------------------------------------------------------------------

@torch.no_grad()
def calibrate_batch_norm(prior: KernelPrior, config: KernelPriorTrainConfig) -> None:
    """Set every flow batch norm's running statistics to those of one large batch of training
    kernels. Eval mode (test-time fine-tuning's) relies on them, and the running averages of
    128-kernel batches are noisy; this touches no trained parameter."""
    size = prior.config.kernel_size
    generator = torch.Generator().manual_seed(config.seed + CALIBRATION_SEED_OFFSET)
    kernels = training_kernels(config.calibration_count, config, generator, size)
    noise = torch.rand(len(kernels), size * size, generator=generator) * prior.config.dequantisation
    layers = [m for m in prior.modules() if isinstance(m, FlowBatchNorm)]
    momenta = [layer.momentum for layer in layers]
    was_training = prior.training
    for layer in layers:
        layer.momentum = 1.0
    prior.train()
    prior.to_latent(prior.represent(kernels, noise))
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    prior.train(was_training)


def learning_rate_at(step: int, config: KernelPriorTrainConfig) -> float:
    """Cosine decay from `learning_rate` to 1/20 of it over `steps` (stateless, so resuming is exact)."""
    low = config.learning_rate / 20
    return low + (config.learning_rate - low) * 0.5 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps))


def _resume(out: Path, prior: KernelPrior, optimiser: torch.optim.Optimizer,
            generator: torch.Generator) -> tuple[int, float]:
    """Load the checkpoint into the model, optimiser and generator; drop log rows written after
    it. Returns the step and the training seconds so far (0, 0.0 without a checkpoint)."""
    if not (out / CHECKPOINT).exists():
        return 0, 0.0
    state = torch.load(out / CHECKPOINT, weights_only=True)
    prior.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    generator.set_state(state["generator"])
    step = int(state["step"])
    log_path = out / "log.csv"
    if log_path.exists():
        rows = list(csv.reader(log_path.open()))
        kept = [rows[0]] + [row for row in rows[1:] if int(row[0]) <= step]
        with log_path.open("w", newline="") as handle:
            csv.writer(handle).writerows(kept)
    return step, float(state["seconds"])


def _checkpoint(out: Path, prior: KernelPrior, optimiser: torch.optim.Optimizer,
                generator: torch.Generator, step: int, seconds: float) -> None:
    temporary = out / (CHECKPOINT + ".tmp")
    torch.save({"model": prior.state_dict(), "optimiser": optimiser.state_dict(),
                "generator": generator.get_state(), "step": step, "seconds": seconds}, temporary)
    temporary.replace(out / CHECKPOINT)


def train_kernel_prior(config: KernelPriorTrainConfig, log: Callable[[str], None] = print,
                       on_step: Callable[[int, float], None] | None = None) -> Path:
    """Train the kernel prior on CPU, resuming from `out_dir`/checkpoint.pt if present. Writes
    log.csv, validation.json and kernel_prior.safetensors there; returns the weights' path.

    `log` hears the validation lines, `on_step` every step's number and loss (progress bars)."""
    out = start_run(config)
    prior = KernelPrior(KernelPriorConfig(**config.model_config))
    optimiser = torch.optim.Adam(prior.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    step, seconds = _resume(out, prior, optimiser, generator)
    if step:
        log(f"resumed at step {step}")
    held_out = validation_sets(config, prior.config.kernel_size)
    size = prior.config.kernel_size
    new_log = not (out / "log.csv").exists()
    with open(out / "log.csv", "a", newline="") as log_file:
        writer = csv.writer(log_file)
        if new_log:
            writer.writerow(LOG_COLUMNS)
        prior.train()
        running, started = [], time.perf_counter()
        while step < config.steps:
            kernels = training_kernels(config.batch_size, config, generator, size)
            noise = torch.rand(len(kernels), size * size, generator=generator) * prior.config.dequantisation
            loss = -prior.log_prob(kernels, noise).mean()
            for group in optimiser.param_groups:
                group["lr"] = learning_rate_at(step, config)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(prior.parameters(), config.grad_clip)
            optimiser.step()
            step += 1
            running.append(loss.item())
            if on_step:
                on_step(step, running[-1])
            if step % config.val_every == 0 or step == config.steps:
                calibrate_batch_norm(prior, config)
                nll = {name: mean_nll(prior, held_out[name]) for name in ("gaussian", "motion", "defocus", "noise")}
                seconds += time.perf_counter() - started
                started = time.perf_counter()
                row = [step, sum(running) / len(running), *nll.values(), round(seconds, 1)]
                writer.writerow([f"{v:.4f}" if isinstance(v, float) else v for v in row])
                log_file.flush()
                log(f"step {step}: train NLL {row[1]:.1f}, held-out NLL " +
                    ", ".join(f"{name} {value:.1f}" for name, value in nll.items()) + f" ({seconds:.0f} s)")
                running = []
                _checkpoint(out, prior, optimiser, generator, step, seconds)
    return _finish(prior, config, out, seconds, log)


def _finish(prior: KernelPrior, config: KernelPriorTrainConfig, out: Path, seconds: float,
            log: Callable[[str], None]) -> Path:
    """Evaluate the trained prior (validation.json) and write its weights with their facts."""
    prior.eval()
    started = time.perf_counter()
    figures = evaluate_kernel_prior(prior, config)
    (out / "validation.json").write_text(json.dumps(figures, indent=2))
    if config.plot:
        plot_kernels(prior, config, out / "kernels.png")
    log(f"evaluated in {time.perf_counter() - started:.0f} s: " +
        ", ".join(f"{name} NLL {f['nll']:.1f} / fit {f['rel_l2_mean']:.4f}" for name, f in figures.items()))
    weights = out / f"{KernelPrior.name}.safetensors"
    save_weights(prior, weights, {
        "training": asdict(config), "training_seconds": round(seconds, 1), "validation": figures,
        "device": "cpu", "torch": torch.__version__, "machine": machine_description(),
        "parameters": sum(p.numel() for p in prior.parameters())})
    return weights


def machine_description() -> str:
    """The CPU model and core count, e.g. "AMD EPYC, 2 cores" (Linux), else the architecture."""
    name = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")]
        name = models[0] if models else name
    return f"{name}, {os.cpu_count()} cores"
